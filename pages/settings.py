"""Settings: the key, the URLs and the mode, for this browser session."""

import streamlit as st

from kie.errors import KieError
from studio import display, hosting, runtime, session
from studio.session import Keys

hosting.require_gate()  # defence in depth: ui.py shows the gate first

overrides: dict = dict(st.session_state.get(Keys.SETTINGS_OVERRIDES, {}))
current = session.settings()
host = runtime.host()

st.title("Settings")
st.write(
    "Changes here last for this browser session only. The host's environment or "
    "`secrets.toml` stays the default for everyone."
)

st.subheader("Kie API key")
if overrides.get("api_key"):
    st.success("An API key is set for this session.", icon=":material/key:")
elif host.api_key and host.visitor_keys != "required":
    st.success("An API key is set by the host.", icon=":material/key:")
    if host.visitor_quota is not None:
        st.caption(f"Each visitor may send {host.visitor_quota} extends on it; paste your "
                   "own key for more.")
elif host.visitor_keys == "required":
    st.info("This demo asks visitors to bring their own Kie key. Without one, the app "
            "uses its sandbox.", icon=":material/key_off:")
else:
    st.info("No API key is set: the app uses its sandbox.", icon=":material/key_off:")

with st.form("settings.form", border=True, clear_on_submit=True):
    new_key = st.text_input(
        "New API key",
        type="password",
        placeholder="Paste a key from kie.ai/api-key",
        help="It is kept for this browser session only and never shown again.",
    )
    base_url = st.text_input(
        "API base URL",
        value=current.base_url,
        help="Another address than the host's is used only together with your own key: "
        "the host's key is never sent anywhere else.",
    )
    public_url = st.text_input(
        "This app's public URL",
        value=current.public_url or "",
        placeholder="e.g. https://studio.example.com (empty: this computer's address)",
        help="Used to build the callback URL Kie calls.",
    )
    sandbox = st.toggle(
        "Use the sandbox even with a key", value=current.sandbox_forced,
        help="Simulated results, no credits used.",
    )
    saved = st.form_submit_button("Save", type="primary", icon=":material/save:")

if saved:
    problems = []
    if not base_url.strip().startswith(("http://", "https://")):
        problems.append("The API base URL must start with http:// or https://.")
    if public_url.strip() and not public_url.strip().startswith(("http://", "https://")):
        problems.append("The public URL must start with http:// or https://.")
    key = new_key.strip()
    if key and (not key.isascii() or not key.isprintable() or " " in key):
        # Never echo the value: it is a secret even when it is malformed.
        problems.append("That API key contains spaces or unusual characters; paste it again.")
    has_own_key = bool(key or overrides.get("api_key"))
    if base_url.strip().rstrip("/") != host.base_url and not has_own_key:
        problems.append("Another API base URL needs your own API key too (the host's key "
                        "only goes to the host's address).")
    for problem in problems:
        st.error(problem)
    if not problems:
        if key:
            overrides["api_key"] = key
        overrides["base_url"] = base_url.strip().rstrip("/")
        overrides["public_url"] = public_url.strip().rstrip("/")
        overrides["sandbox_forced"] = sandbox
        st.session_state[Keys.SETTINGS_OVERRIDES] = overrides
        st.session_state.pop(Keys.EXTEND_CREDITS, None)
        st.session_state.pop(Keys.EXTEND_PREFIX + "callBackUrl", None)
        st.rerun()

if overrides.get("api_key") and st.button("Forget this session's key", icon=":material/delete:"):
    overrides.pop("api_key")
    overrides.pop("base_url", None)  # back to the host's address with the host's key
    st.session_state[Keys.SETTINGS_OVERRIDES] = overrides
    st.session_state.pop(Keys.EXTEND_CREDITS, None)
    st.rerun()

st.subheader("Callbacks")
st.write("Kie reports progress to this address (paste it into Kie's settings if asked):")
st.code(session.callback_url(), language=None)
if current.webhook_hmac_key:
    st.caption(":material/verified_user: Callback signatures are checked with the host's "
               "webhook key (KIE_WEBHOOK_HMAC_KEY).")
else:
    st.caption(":material/vpn_key: No webhook key is set, so the callback URL carries a "
               "secret token instead. The host can set KIE_WEBHOOK_HMAC_KEY to check "
               "Kie's signatures.")
if not session.callbacks_can_arrive():
    st.warning("This address cannot be reached from the internet, so the app asks Kie for "
               "progress itself (every 30 seconds).", icon=":material/wifi_off:")

st.subheader("Connection")
st.write(f"Mode: **{'Sandbox' if current.sandbox else 'Kie API'}** · calls go to "
         f"{display.md(session.api_base_url(current), 300)}")
if st.button("Test connection", icon=":material/network_check:"):
    try:
        credits = session.client().get_credits()
    except KieError as exc:
        st.error(display.md(exc.message, 800), icon=":material/error:")
    else:
        st.success(f"Connected. Credits left: {credits}.", icon=":material/check_circle:")
