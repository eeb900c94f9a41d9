"""The discrete-event simulator of serving clusters."""

__all__: list[str] = []
