"""The web service: HTTP upload and WebSocket streaming over one Recognizer, plus the browser page."""
