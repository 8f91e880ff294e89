"""The Dash web app: scatter of the embeddings, regenerated samples layer by layer, teacher vs student.

The only package that imports dash. Organised by feature: `scatter` (the UMAP scatter, hover,
click), `panels` (the inspector: first look, the teacher's run, slider, heatmaps, similarity, PNG)
and `selection` (gallery, class counts, CSV) each hold their layout (`layout(info)`), their figures
and their callbacks as module-level functions `fn(ctx, *inputs) -> outputs`, which `register(app,
ctx)` wires. Shared: `context` (AppContext, LayoutInfo), `ids` (every component id), `ui` (styles),
`thumbs` (the /thumbs/ route), `jobs` (threaded background callbacks). `page` assembles the
features' layouts; `server.create_app(state)` builds the app; `cli.main` is the command line;
`config.load` reads what it shows. The engine it drives is `visualizer.inspection` (no dash).
"""
