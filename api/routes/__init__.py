"""The API's routes, one router per resource: tickets, their audit timeline, actions, inbound webhooks."""
