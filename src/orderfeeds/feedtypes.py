"""Feed types, their fields and the enumerations of SPEC §2."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FeedType(StrEnum):
    FLAT_CANCELLATION = "POST_FLAT_FILE_ORDER_ACKNOWLEDGEMENT_DATA"
    FLAT_ADJUSTMENT = "POST_FLAT_FILE_PAYMENT_ADJUSTMENT_DATA"
    XML_ACKNOWLEDGEMENT = "POST_ORDER_ACKNOWLEDGEMENT_DATA"
    XML_ADJUSTMENT = "POST_PAYMENT_ADJUSTMENT_DATA"

    @property
    def is_xml(self) -> bool:
        return self in (FeedType.XML_ACKNOWLEDGEMENT, FeedType.XML_ADJUSTMENT)

    @property
    def is_cancellation(self) -> bool:
        return self in (FeedType.FLAT_CANCELLATION, FeedType.XML_ACKNOWLEDGEMENT)


CANCEL_REASONS = (
    "NoInventory", "ShippingAddressUndeliverable", "CustomerExchange", "BuyerCanceled",
    "GeneralAdjustment", "CarrierCreditDecision", "RiskAssessmentInformationNotValid",
    "CarrierCoverageFailure", "CustomerReturn", "MerchandiseNotReceived",
    "CannotVerifyInformation", "PricingError", "RejectOrder", "WeatherDelay",
)

ADJUSTMENT_REASONS = (
    "NoInventory", "CustomerReturn", "GeneralAdjustment", "CouldNotShip", "DifferentItem",
    "Abandoned", "CustomerCancel", "PriceError", "ProductOutofStock",
    "CustomerAddressIncorrect", "Exchange", "Other", "CarrierCreditDecision",
    "RiskAssessmentInformationNotValid", "CarrierCoverageFailure", "TransactionRecord",
    "Undeliverable", "RefusedDelivery",
)

ORDER_STATUSES = (
    "PendingAvailability", "Pending", "Unshipped", "PartiallyShipped", "Shipped",
    "InvoiceUnconfirmed", "Canceled", "Unfulfillable",
)

# ISO 4217 currencies without minor units: their amounts may carry no decimals.
ZERO_DECIMAL_CURRENCIES = (
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX",
    "UYI", "VND", "VUV", "XAF", "XOF", "XPF",
)


class Kind(StrEnum):
    """How a field's text is checked; see validate.py for the checks."""

    ORDER_ID = "order id"
    ITEM_CODE = "item code"
    ENUM = "enumeration"
    AMOUNT = "amount"
    MONEY = "money"  # a snapshot amount: up to 2 decimals, blank is zero
    COUNT = "count"
    CURRENCY = "currency"
    BOOL = "boolean"
    TEXT = "text"


@dataclass(frozen=True)
class Field:
    """One input field: its name in the file and in the record frame."""

    name: str
    canonical: str
    kind: Kind
    column_required: bool = True
    value_required: bool = False
    choices: tuple[str, ...] = ()
    # XML Quantity is the exception: absent means "every open unit", not zero.
    blank_is_zero: bool = True

    @property
    def defaults_to_zero(self) -> bool:
        """Blank means 0 / false for counts, snapshot money and flags (SPEC §2.3, §3)."""
        return self.blank_is_zero and not self.value_required and self.kind in (Kind.COUNT, Kind.MONEY, Kind.BOOL)


def _amount(name: str, canonical: str, required: bool = True) -> Field:
    return Field(name, canonical, Kind.AMOUNT, column_required=required, value_required=required)


FLAT_CANCELLATION_FIELDS: tuple[Field, ...] = (
    Field("order-id", "order-id", Kind.ORDER_ID, value_required=True),
    Field("cancellation-reason-code", "reason", Kind.ENUM, choices=CANCEL_REASONS),
    Field("amazon-order-item-code", "order-item-id", Kind.ITEM_CODE, column_required=False),
    # The older 4-column template carries it; it names nothing we look up.
    Field("merchant-order-id", "merchant-order-id", Kind.TEXT, column_required=False),
)

FLAT_ADJUSTMENT_FIELDS: tuple[Field, ...] = (
    Field("order-id", "order-id", Kind.ORDER_ID, value_required=True),
    Field("order-item-id", "order-item-id", Kind.ITEM_CODE, value_required=True),
    Field("adjustment-reason-code", "reason", Kind.ENUM, value_required=True, choices=ADJUSTMENT_REASONS),
    Field("currency", "currency", Kind.CURRENCY, value_required=True),
    _amount("item-price-adj", "Principal"),
    _amount("item-tax-adj", "Tax"),
    _amount("shipping-price-adj", "Shipping"),
    _amount("shipping-tax-adj", "ShippingTax"),
    _amount("gift-wrap-price-adj", "GiftWrap"),
    _amount("gift-wrap-tax-adj", "GiftWrapTax"),
    _amount("item-promotion-adj", "PromotionPrincipal", required=False),
    Field("item-promotion-id", "item-promotion-id", Kind.TEXT, column_required=False),
    _amount("ship-promotion-adj", "PromotionShipping", required=False),
    Field("ship-promotion-id", "ship-promotion-id", Kind.TEXT, column_required=False),
    Field("quantity-cancelled", "quantity-cancelled", Kind.COUNT),
)

FLAT_FIELDS: dict[FeedType, tuple[Field, ...]] = {
    FeedType.FLAT_CANCELLATION: FLAT_CANCELLATION_FIELDS,
    FeedType.FLAT_ADJUSTMENT: FLAT_ADJUSTMENT_FIELDS,
}
