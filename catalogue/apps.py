from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CatalogueConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "catalogue"

    def ready(self) -> None:
        from catalogue.roles import roles_sync_after_migrate

        # Groups need the permissions, which Django itself creates in post_migrate.
        post_migrate.connect(roles_sync_after_migrate, dispatch_uid="catalogue_roles_sync")
