"""Billing's management API routes: one router line per model, kebab-case plurals."""

from rest_framework.routers import DefaultRouter

from billing.api import views

router = DefaultRouter()
router.register("budgets", views.BudgetViewSet, basename="budget")
router.register("price-book-entries", views.PriceBookEntryViewSet, basename="price-book-entry")

urlpatterns = router.urls
