"""Gradio application: `app.ui.build_demo()` builds it, `launch_app.py` starts it."""
