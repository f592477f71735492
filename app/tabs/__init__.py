"""One module per tab of the app: its handlers (a mixin of app.ui.LandmarkApp) and its layout
(a build_*_tab function called inside app.ui.build_demo's gr.Blocks)."""
