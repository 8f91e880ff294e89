"""Every component id of the page, as constants of `ID`: a typo fails at import rather than in a browser.

One namespace for all features, because features meet through ids: the scatter's click fills the
`clicked` store that the panels read, and it writes the seed and class pickers shown in the panels'
box. The session stores (dcc.Store, kept per browser tab) sit at the bottom of the page (`page`).
"""

from __future__ import annotations


class ID:
    # the scatter (visualizer.app.scatter)
    scatter = "scatter"
    tooltip = "hover-tip"
    colour_by = "colour-by"
    class_filter = "class-filter"
    model_toggle = "model-toggle"
    link_seeds = "link-seeds"
    class_highlight = "class-highlight"     # the classes to colour (the rest grey)
    palette = "palette"                     # default or colour-blind-safe class colours
    # the inspector panels (visualizer.app.panels)
    seed_input = "seed-input"
    class_input = "class-input"
    generate = "generate-btn"
    layer_pick = "layer-pick"
    layers_default = "layers-default"
    layers_legacy = "layers-legacy"
    layers_native = "layers-native"
    naming = "layer-naming"                 # one naming per page: legacy or native layer names
    scale_mode = "scale-mode"               # heatmap colour scale: shared by the models or per model
    reduction = "reduction"
    reduction_arg = "reduction-arg"
    seed_message = "seed-message"           # why a typed seed is refused
    status = "inspect-status"
    busy = "inspect-busy"                   # spinner + "regenerating seed s ..." while the first look computes
    busy_text = "inspect-busy-text"
    results = "results"                     # the box with the status, progress, slider and the panels
    progress_row = "progress-row"
    progress = "teacher-progress"
    progress_text = "progress-text"
    cancel = "cancel-btn"
    slider = "step-slider"
    step_label = "step-label"
    panels = "panels"
    similarity = "similarity"
    download_png = "download-png"
    png_done = "png-done"
    download_npz = "download-npz"
    npz_download = "npz-download"
    # teacher vs student over many samples (visualizer.app.comparison, issue 15)
    cmp_box = "cmp-box"
    cmp_layers = "cmp-layers"
    cmp_step = "cmp-step"                   # the teacher's sampler step compared (0-based value)
    cmp_source = "cmp-source"               # auto | stores | trace: where the matrix's rows come from
    cmp_seeds = "cmp-seeds"                 # the seeds of a fresh trace
    cmp_class = "cmp-class"                 # "all" or one class
    cmp_resamples = "cmp-resamples"
    cmp_run = "cmp-run"
    cmp_cancel = "cmp-cancel"
    cmp_progress_row = "cmp-progress-row"
    cmp_progress = "cmp-progress"
    cmp_progress_text = "cmp-progress-text"
    cmp_status = "cmp-status"
    cmp_matrix = "cmp-matrix"               # the teacher-layer x student-layer heatmap
    cmp_diagonal = "cmp-diagonal"           # its matched layers, with the interval band and the null
    align_source = "align-source"
    align_seeds = "align-seeds"
    align_run = "align-run"
    align_cancel = "align-cancel"
    align_progress_row = "align-progress-row"
    align_progress = "align-progress"
    align_progress_text = "align-progress-text"
    align_status = "align-status"
    align_graph = "align-graph"             # student layer x teacher step, the ridge marked
    # the edits and the patch sweep (visualizer.app.edits)
    edit_model = "edit-model"
    edit_layer = "edit-layer"
    edit_op = "edit-op"
    edit_channels = "edit-channels"
    edit_factor = "edit-factor"
    edit_sigma_low = "edit-sigma-low"
    edit_sigma_high = "edit-sigma-high"
    edit_source = "edit-source"
    edit_source_seed = "edit-source-seed"
    edit_class_a = "edit-class-a"
    edit_class_b = "edit-class-b"
    edit_region_graph = "edit-region-graph"   # the layer's heatmap to paint a region on
    edit_region_text = "edit-region-text"
    edit_region_clear = "edit-region-clear"
    edit_apply = "edit-apply"
    edit_undo = "edit-undo"
    edit_clear = "edit-clear"
    edit_full_run = "edit-full-run"
    edit_message = "edit-message"           # why an edit is refused
    edit_list = "edit-list"
    edit_result = "edit-result"             # the box with the edited images and the per-layer change
    edit_status = "edit-status"
    edit_images = "edit-images"
    edit_changes = "edit-changes"
    edits = "edits"                         # store: the applied edits, EditSpec.to_dict() each, in order
    edit_region = "edit-region"             # store: the painted (r0, c0, r1, c1), end-exclusive, or None
    sweep_seeds = "sweep-seeds"
    sweep_run = "sweep-run"
    sweep_status = "sweep-status"
    sweep_graph = "sweep-graph"
    # the nearest neighbours of the clicked point (visualizer.app.neighbours)
    neighbour_k = "neighbour-k"
    neighbour_generate = "neighbour-generate"   # "generate from neighbours": adds the edit
    neighbour_message = "neighbour-message"
    neighbour_status = "neighbour-status"
    neighbour_trust = "neighbour-trust"         # how far to trust the map (trustworthiness, agreement)
    neighbour_gallery = "neighbour-gallery"     # the cards, one per neighbour (its row in data-row)
    neighbour_pick = "neighbour-pick"           # store: the card clicked, {row, at} (the page's listener)
    neighbours = "neighbours"                   # store: {"query": row, "rows": [rows, nearest first]}
    # the selection (visualizer.app.selection)
    gallery = "gallery"
    class_counts = "class-counts"
    selection_summary = "selection-summary"
    export_csv = "export-csv"
    csv_download = "csv-download"
    # the selection's gallery pages (visualizer.app.selection, issue 19)
    gallery_prev = "gallery-prev"
    gallery_next = "gallery-next"
    gallery_pager = "gallery-pager"           # "121-240 of 873"
    gallery_page = "gallery-page"             # store: the page shown, from 0
    # pins and history (visualizer.app.pins, issue 19)
    pins_box = "pins-box"
    pin_add = "pin-add"
    pin_remove = "pin-remove"
    pin_clear = "pin-clear"
    pin_message = "pin-message"
    pin_strip = "pin-strip"                   # the pinned samples side by side; picking one makes it current
    history_pick = "history-pick"             # the samples clicked lately; picking one makes it current
    pins = "pins"                             # store: the pinned samples (seed, class, step, edits, layers, ...)
    history = "history"                       # store: the samples clicked lately, newest first
    key_action = "key-action"                 # store: a key the page's listener took ({action, at}; assets/app/keys.js)
    # the address (visualizer.app.urlstate, issue 19)
    url = "url"                               # hidden: its title is the hash last written into the address
    url_in = "url-in"                         # store: the hash as the page was opened or went back/forward to
    url_out = "url-out"                       # store: the hash the page's state makes ({hash, key, replace})
    url_step = "url-step"                     # store: a step from the address, set once its run is on the slider
    url_arg = "url-arg"                       # store: a reduction argument from the address, set after its reset
    # exploring the map (visualizer.app.explore, issue 19): map switcher, find and zoom, the trajectory
    explore = "explore"
    map_pick = "map-pick"                    # the map switcher (dropdown of the run's maps)
    map_about = "map-about"                  # one line: what the current map embeds
    find_text = "find-text"
    find_go = "find-go"
    zoom_selection = "zoom-selection"
    zoom_reset = "zoom-reset"
    find_message = "find-message"
    traj_prev = "traj-prev"
    traj_play = "traj-play"
    traj_next = "traj-next"
    traj_timer = "traj-timer"                # dcc.Interval: while playing, each tick moves the slider a step
    traj_note = "traj-note"
    map_choice = "map-choice"                # store: the id of the map shown ("main" or a per-layer map's id)
    map_zoom = "map-zoom"                    # store: {map, rev, x: [lo, hi] | None, y: [lo, hi] | None}
    found = "found"                          # store: the table rows the last find found (ringed on the map)
    # the map's overlays and the class-collapse ranking (visualizer.app.overlays, visualizer.app.collapse; issue 16)
    density_toggle = "density-toggle"        # checklist: density contours per visible model on the map
    real_view = "real-view"                  # a clicked real image (probe map): shown, not regenerated
    collapse_box = "collapse-box"
    collapse_run = "collapse-run"            # "rank classes": the ranking and the seed correspondence (a job)
    collapse_cancel = "collapse-cancel"
    collapse_progress_row = "collapse-progress-row"
    collapse_progress = "collapse-progress"
    collapse_progress_text = "collapse-progress-text"
    collapse_status = "collapse-status"
    collapse_chart = "collapse-chart"        # classes ranked by the student's spread ratio; a click opens a class
    collapse_table = "collapse-table"
    collapse_gallery = "collapse-gallery"    # teacher / student / real thumbnails of the clicked class
    collapse_corr = "collapse-corr"          # seed correspondence: top-1 retrieval against chance
    # session state
    clicked = "clicked"                     # the chosen sample: written by the scatter, read by the panels
    first_ready = "first-ready"             # the request whose first look is in the server cache
    trajectory_ready = "trajectory-ready"   # the teacher's finished run (announced by the background job)
    trajectory_done = "trajectory-done"     # the background job's own output
    selection = "selection"                 # row numbers of the box/lasso selection
    # the server's own (visualizer.app.guard)
    notice = "server-notice"                # what the server refused or could not do, in words
    panel_width = "panel-width"             # the panels' container width in pixels (measured by the page)
    hover_point = "hover-point"             # the scatter's hoverData, when the mouse really moved
    scatter_view = "scatter-view"           # store: the view the user looks at, {map, x, y, rev} (overview, issue 21)
    step_auto = "step-auto"                 # the step the server put the slider on: {run, step}

