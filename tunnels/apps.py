from django.apps import AppConfig


class TunnelsConfig(AppConfig):
    name = "tunnels"
    default_auto_field = "django.db.models.BigAutoField"
