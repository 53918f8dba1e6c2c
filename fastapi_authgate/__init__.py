"""fastapi_authgate: identity checks, rate limits and activity reporting in front of FastAPI routes."""

__version__ = "0.1.0"
