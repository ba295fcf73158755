"""REST viewsets for budgets and price-book entries, with the admin's permissions (`common.drf`)."""

from __future__ import annotations

from rest_framework import mixins, viewsets

from billing.api.serializers import BudgetSerializer, PriceBookEntrySerializer
from billing.models import Budget, PriceBookEntry
from common.drf import ViewModelPermissions, destroy_unless_protected


class BudgetViewSet(viewsets.ModelViewSet[Budget]):
    """Budgets: spend limits per scope and period."""

    queryset = Budget.objects.all()
    serializer_class = BudgetSerializer
    permission_classes = [ViewModelPermissions]
    filterset_fields = ["scope", "period", "enabled"]

    def perform_destroy(self, instance: Budget) -> None:
        destroy_unless_protected(instance)


class PriceBookEntryViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[PriceBookEntry],
):
    """The price book: add an entry (now or scheduled), list, read or delete one; never change one."""

    queryset = PriceBookEntry.objects.all()
    serializer_class = PriceBookEntrySerializer
    permission_classes = [ViewModelPermissions]
    filterset_fields = ["endpoint"]
