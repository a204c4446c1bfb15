import streamlit as st

st.title("Hello")
