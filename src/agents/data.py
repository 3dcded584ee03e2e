"""The Data agent: one customer's data from every table, normalised and cached."""

from __future__ import annotations

import re

from cvm.agents.base import BaseAgent, handles
from cvm.agents.messages import (
    Ack,
    CheckCustomerIds,
    ClearCache,
    CustomerDataResponse,
    CustomerListResponse,
    GetCustomerData,
    ListCustomers,
)
from cvm.tools.data_source import CustomerDataSource
from cvm.tools.records import CustomerData, normalise_customer
from cvm.utils.cache import LRUCache
from cvm.utils.errors import InvalidCustomerIdError, UnknownCustomerError


class DataAgent(BaseAgent):
    """Reads through a ``CustomerDataSource``; never touches files itself."""

    name = "DataAgent"

    def __init__(
        self, source: CustomerDataSource, customer_id_pattern: str = r"^[A-Za-z0-9_-]{1,64}$", cache_size: int = 20_000
    ):
        self._source = source
        self._pattern = re.compile(customer_id_pattern)
        self._cache = LRUCache(cache_size)

    def check_customer_id(self, customer_id: str) -> str:
        """The id unchanged, or ``InvalidCustomerIdError`` when it breaks the configured pattern."""
        if not self._pattern.fullmatch(customer_id):
            raise InvalidCustomerIdError(
                f"customer id {customer_id!r} does not match validation.customer_id_pattern {self._pattern.pattern}",
                customer_id=customer_id,
            )
        return customer_id

    @handles(CheckCustomerIds)
    def _check_customer_ids(self, message: CheckCustomerIds) -> CustomerListResponse:
        return CustomerListResponse(customer_ids=tuple(self.check_customer_id(cid) for cid in message.customer_ids))

    @handles(GetCustomerData)
    def _get_customer_data(self, message: GetCustomerData) -> CustomerDataResponse:
        cid = self.check_customer_id(message.customer_id)
        return CustomerDataResponse(data=self._cache.get_or_compute(cid, lambda: self._load(cid)))

    def _load(self, cid: str) -> CustomerData:
        rows = self._source.rows_for(cid)
        if not any(rows.values()):
            raise UnknownCustomerError(f"unknown customer {cid}: no table in the data folder mentions it", customer_id=cid)
        return normalise_customer(cid, rows, self._source.table_issues())

    @handles(ListCustomers)
    def _list_customers(self, message: ListCustomers) -> CustomerListResponse:
        return CustomerListResponse(customer_ids=tuple(self._source.customer_ids()))

    @handles(ClearCache)
    def _clear_cache(self, message: ClearCache) -> Ack:
        return Ack(detail=f"cleared {self._cache.clear()} cached customer(s)")
