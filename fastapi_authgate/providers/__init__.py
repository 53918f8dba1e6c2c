"""Identity providers: one module per provider, each fixing its wire format in its docstring."""

__all__: list[str] = []
