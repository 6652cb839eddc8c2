"""URLconf of the main host when the admin has a host of its own: /admin/, /api/ and
/metrics are not found here."""

from tunnelsite.urls import site_patterns

urlpatterns = site_patterns
