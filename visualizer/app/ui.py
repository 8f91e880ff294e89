"""The look every feature shares: box and text styles, and the placeholder figure of an empty view."""

from __future__ import annotations

import plotly.graph_objects as go

HIDDEN = {"display": "none"}
BOX = {"border": "1px solid #e2e2e2", "borderRadius": "6px", "padding": "10px", "margin": "0 0 10px 0",
       "background": "white"}
SMALL = {"fontSize": "12px", "color": "#555"}


def empty_figure(message: str, height: int = 240) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(height=height, xaxis=dict(visible=False), yaxis=dict(visible=False), plot_bgcolor="white",
                      margin=dict(l=10, r=10, t=10, b=10),
                      annotations=[dict(text=message, showarrow=False, font=dict(size=13, color="#666"))])
    return fig
