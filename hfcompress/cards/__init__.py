"""Model cards written from a run's compression.json, with a chart of what compression cost and saved.

Names are imported on first use, so `hfcompress.cards.metadata` stays light for `hfcompress push`.
"""

from importlib import import_module

_EXPORTS = {
    "CARD_NAME": "hfcompress.cards.metadata",
    "CHART_NAME": "hfcompress.cards.chart",
    "card_metadata": "hfcompress.cards.metadata",
    "render_model_card": "hfcompress.cards.card",
    "run_id": "hfcompress.cards.metadata",
    "template_dir": "hfcompress.cards.card",
    "write_chart": "hfcompress.cards.chart",
    "write_model_card": "hfcompress.cards.card",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hfcompress.cards' has no attribute '{name}'")
