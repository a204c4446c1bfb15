"""Extend Studio: `streamlit run app.py` serves the pages, the callback receiver
(POST /kie/callback) and the Kie sandbox (/kie-sandbox/...) on one port."""

import streamlit as st

from studio.server import lifespan, middleware, routes

app = st.App("ui.py", routes=routes(), middleware=middleware(), lifespan=lifespan)
