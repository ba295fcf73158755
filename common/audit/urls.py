"""The audit trail's routes under /api/audit/."""

from common.audit.api import router

urlpatterns = router.urls
