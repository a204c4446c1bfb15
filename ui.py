"""The UI entry script: page navigation and what every page shows."""

import streamlit as st

from studio import hosting, session

PAGES = [
    st.Page("pages/extend.py", title="Extend", icon=":material/library_music:", default=True),
    st.Page("pages/tasks.py", title="Tasks", icon=":material/queue_music:"),
    st.Page("pages/settings.py", title="Settings", icon=":material/settings:"),
]

st.set_page_config(page_title="Extend Studio", page_icon=":material/graphic_eq:", layout="wide")
if not hosting.gate_open():
    # The host's passcode first: until it is entered, every page's address shows the gate
    # (and, once it is, the page asked for).
    gates = [st.Page(hosting.gate_page, title="Passcode", icon=":material/lock:",
                     url_path=p.url_path, default=p is PAGES[0]) for p in PAGES]
    st.navigation(gates, position="hidden").run()
    st.stop()
page = st.navigation(PAGES)
session.keep_form_values()
session.mode_banner()
page.run()
