"""The management API's routes: one router line per model, kebab-case plurals."""

from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter()
router.register("model-endpoints", views.ModelEndpointViewSet, basename="model-endpoint")
router.register("policies", views.PolicyViewSet, basename="policy")
router.register("request-records", views.RequestRecordViewSet, basename="request-record")

urlpatterns = router.urls
