"""The management API's routes: one router line per model, kebab-case plurals."""

from rest_framework.routers import DefaultRouter

from routing.api.rest import views

router = DefaultRouter()
router.register("model-endpoints", views.ModelEndpointViewSet, basename="model-endpoint")
router.register("policies", views.PolicyViewSet, basename="policy")
router.register("policy-versions", views.PolicyVersionViewSet, basename="policy-version")
router.register("api-keys", views.ApiKeyViewSet, basename="api-key")
router.register("task-categories", views.TaskCategoryViewSet, basename="task-category")
router.register("category-ladders", views.CategoryLadderViewSet, basename="category-ladder")
router.register("goal-weights", views.GoalWeightsViewSet, basename="goal-weights")
router.register("experiments", views.ExperimentViewSet, basename="experiment")
router.register("request-records", views.RequestRecordViewSet, basename="request-record")
router.register("quality-labels", views.QualityLabelViewSet, basename="quality-label")
router.register("shadow-evaluations", views.ShadowEvaluationViewSet, basename="shadow-evaluation")
router.register("scorer-versions", views.ScorerVersionViewSet, basename="scorer-version")

urlpatterns = router.urls
