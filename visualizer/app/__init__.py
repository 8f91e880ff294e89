"""The Dash web app: scatter of the embeddings, regenerated samples layer by layer, teacher vs student.

The only package that imports dash. `create_app(state)` in `server` builds the app; `cli.main`
is the command line; the engine it drives is `visualizer.inspection` (no dash).
"""
