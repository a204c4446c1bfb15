"""The UI entry script: page navigation and what every page shows."""

import streamlit as st

from studio import session

PAGES = [
    st.Page("pages/extend.py", title="Extend", icon=":material/library_music:", default=True),
    st.Page("pages/tasks.py", title="Tasks", icon=":material/queue_music:"),
    st.Page("pages/settings.py", title="Settings", icon=":material/settings:"),
]

st.set_page_config(page_title="Extend Studio", page_icon=":material/graphic_eq:", layout="wide")
page = st.navigation(PAGES)
session.keep_form_values()
session.mode_banner()
page.run()
