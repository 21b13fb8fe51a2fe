from django.apps import AppConfig
from django.db.models.signals import post_migrate


class TrainingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "training"

    def ready(self) -> None:
        # The admin role holds "training.*"; the permissions exist only once this app has
        # migrated, after catalogue's own sync ran.
        post_migrate.connect(_roles_sync, sender=self)


def _roles_sync(sender: AppConfig, **kwargs: object) -> None:
    from catalogue.roles import roles_sync

    roles_sync()
