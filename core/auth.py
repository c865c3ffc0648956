"""Authentication backend: the user row comes with its agent profile.

Every desktop request needs both; loading them in one query (instead of the
user, then the profile) keeps the agent pages within QUALITY.md's DB1 budget.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend


class ParleyModelBackend(ModelBackend):
    def get_user(self, user_id):
        user_model = get_user_model()
        try:
            user = user_model._default_manager.select_related("agent", "agent__not_ready_reason").get(pk=user_id)
        except user_model.DoesNotExist:
            return None
        return user if self.user_can_authenticate(user) else None
