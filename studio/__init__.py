"""Extend Studio's own state, apart from the Kie contract: settings, the task store,
the callback receiver and the visitor cookie."""
