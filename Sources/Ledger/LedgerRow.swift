import MeterCore
import Signing

/// One row of the ledger: a meter's interval with its energy and its amount under the tariff it was priced with.
public struct LedgerRow: Sendable, Hashable {
    public var gateway: String
    public var meter: String
    public var epoch: String
    public var seq: UInt64
    public var startMillis: Int64
    public var endMillis: Int64
    public var importMilliwattHours: Int64
    public var exportMilliwattHours: Int64
    public var quality: String
    public var tariff: String
    public var currency: String
    public var price: Price
    public var amount: Amount
    /// Why the reading could not be priced (64-bit money overflow); its amounts are then 0 and not to be paid.
    public var pricingError: String? = nil
    /// The feed-in price and what the interval's exported energy earns (the tariff's `feed_in`; 0 without one).
    public var exportPrice = Price(scaled: 0, precision: 0)
    public var exportAmount = Amount(exact: 0, scale: 0)

    public init(gateway: String, meter: String, epoch: String, seq: UInt64, startMillis: Int64, endMillis: Int64,
                importMilliwattHours: Int64, exportMilliwattHours: Int64, quality: String, tariff: String, currency: String,
                price: Price, amount: Amount, pricingError: String? = nil,
                exportPrice: Price = Price(scaled: 0, precision: 0), exportAmount: Amount = Amount(exact: 0, scale: 0)) {
        self.gateway = gateway
        self.meter = meter
        self.epoch = epoch
        self.seq = seq
        self.startMillis = startMillis
        self.endMillis = endMillis
        self.importMilliwattHours = importMilliwattHours
        self.exportMilliwattHours = exportMilliwattHours
        self.quality = quality
        self.tariff = tariff
        self.currency = currency
        self.price = price
        self.amount = amount
        self.pricingError = pricingError
        self.exportPrice = exportPrice
        self.exportAmount = exportAmount
    }
}

/// A different record seen under a stored key.
public struct LedgerFork: Sendable, Hashable {
    public var stream: StreamKey
    public var seq: UInt64
    public var storedHash: [UInt8]
    public var otherHash: [UInt8]

    public init(stream: StreamKey, seq: UInt64, storedHash: [UInt8], otherHash: [UInt8]) {
        self.stream = stream
        self.seq = seq
        self.storedHash = storedHash
        self.otherHash = otherHash
    }
}
