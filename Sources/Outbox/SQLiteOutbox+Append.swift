import Foundation
import Logging
import MeterCore
import SQLite

extension SQLiteOutbox {
    // MARK: - Appending

    public func savedState(_ key: String) throws(OutboxError) -> [UInt8]? {
        let s = try open()
        return try sql { () throws(SQLiteError) -> [UInt8]? in
            let select = s.selectState
            defer { select.reset() }
            try select.bind(key, at: 1)
            return try select.step() ? select.blob(0) : nil
        }
    }

    public func append(_ requests: [AppendRequest], saving state: [String: [UInt8]]) throws(OutboxError) -> [OutboxRecord] {
        let s = try open()
        guard !requests.isEmpty || !state.isEmpty else { return [] }
        let now = clock()
        let nowMillis = Self.millis(now)
        var chainer = StreamChainer(epoch: epoch, heads: heads, book: book)
        var records: [OutboxRecord] = []
        records.reserveCapacity(requests.count)
        try sql { () throws(SQLiteError) in try s.begin.run() }
        for request in requests {
            let position: StreamPosition, built: BuiltRecord
            do throws(OutboxError) {
                (position, built) = try chainer.chain(request)
            } catch {
                rollback()
                throw error
            }
            let size = Int64(built.bytes.count + built.hash.count) + OutboxRecord.rowOverheadBytes
            let id = try sql { () throws(SQLiteError) -> Int64 in
                let insert = s.insert
                defer { insert.reset() }
                try insert.bind(request.meter, at: 1)
                try insert.bind(Int64(position.seq), at: 2)
                try insert.bind(nowMillis, at: 3)
                try insert.bind(size, at: 4)
                try insert.bind(built.hash, at: 5)
                try insert.bind(built.bytes, at: 6)
                try insert.bind(Self.digest(hash: built.hash, bytes: built.bytes), at: 7)
                if let end = request.intervalEnd { try insert.bind(end, at: 8) } else { try insert.bindNull(at: 8) }
                try insert.step()
                let id = s.database.lastInsertRowID
                let owed = s.insertPending
                defer { owed.reset() }
                try owed.bind(id, at: 1)
                try owed.bind(s.sink, at: 2)
                try owed.step()
                return id
            }
            if id <= claimCursor { released.insert(id) }
            records.append(OutboxRecord(id: id, meter: request.meter, epoch: epoch, seq: position.seq, bytes: built.bytes,
                                        hash: built.hash, state: .pending, appendedAt: now))
        }
        try sql { () throws(SQLiteError) in
            for (meter, head) in chainer.changed {
                let upsert = s.upsertStream
                defer { upsert.reset() }
                try upsert.bind(meter, at: 1)
                try upsert.bind(Int64(head.lastSeq), at: 2)
                try upsert.bind(head.lastHash, at: 3)
                if let kid = head.lastKeyID { try upsert.bind(kid, at: 4) } else { try upsert.bindNull(at: 4) }
                try upsert.step()
            }
            for (key, value) in state {
                let save = s.saveState
                defer { save.reset() }
                try save.bind(key, at: 1)
                try save.bind(value, at: 2)
                try save.step()
            }
        }
        let announced = chainer.announced()
        try sql { () throws(SQLiteError) in
            try Self.writeLossStatements(s, announced, meters: announced.meters(changedFrom: book))
            try s.commit.run()
        }
        book = announced
        heads.merge(chainer.changed) { $1 }
        unsentBytes += records.reduce(0) { $0 + $1.quotaBytes }
        if unsentBytes + deliveredBytes > configuration.quotaBytes {
            // Over quota: prune now rather than at the next maintenance tick. A failure here must not
            // report the (committed) append as failed.
            do { _ = try maintain(now: now) } catch {
                logger.error("quota maintenance after an append failed", metadata: ["error": "\(error)"])
            }
        }
        return records
    }

}
