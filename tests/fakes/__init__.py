"""Local stand-ins for the helpdesks' public APIs: real HTTP servers on 127.0.0.1, for tests."""
