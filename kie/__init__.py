"""A thin client of Kie.ai's Suno Extend Music API."""

from kie.client import KieClient
from kie.errors import KieError
from kie.models import ExtendRequest, TaskInfo, Track

__all__ = ["ExtendRequest", "KieClient", "KieError", "TaskInfo", "Track"]
