"""The example app: every guard of fastapi_authgate on a few routes (``example_app.main:app``)."""
