from django.conf import settings
from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from catalogue.views import login_throttled
from identification.sighting_views import media_file

urlpatterns = [
    # Both login pages count failed attempts (catalogue.views.login_throttled); these come
    # before the admin's and django.contrib.auth's own routes so they win.
    path("admin/login/", login_throttled(admin.site.login), name="admin-login"),
    path("admin/", admin.site.urls),
    path("accounts/login/", login_throttled(LoginView.as_view()), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("identification.urls")),
    path("training/", include("training.urls")),
    path("notifications/", include("notifications.urls")),
    path("", include("catalogue.urls")),
    # Every photo passes the permission check; see identification.sighting_views.media_file.
    path(f"{settings.MEDIA_URL.strip('/')}/<path:path>", media_file, name="media-file"),
]
