/// The ledger's tables on PostgreSQL: the same tables and keys as the SQLite ledger, and one function that stores a
/// reading in a single round trip (the check, the insert or the fork, the chain links and a stated loss, atomically).
///
/// Versions are kept in `metergate_ledger_schema`; a step never changes once released, a new one goes at the end.
enum PostgresLedgerSchema {
    struct Step: Sendable {
        var version: Int
        var name: String
        /// Run one at a time: the extended protocol takes one command per query.
        var statements: [String]
    }

    static let versionTable = """
        CREATE TABLE IF NOT EXISTS metergate_ledger_schema(
            version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())
        """

    /// Any constant: the key of the advisory lock that keeps two processes from migrating at once.
    static let migrationLock: Int64 = 0x4D47_4C45_4447_4552

    static var known: Int { steps.count }

    static let steps: [Step] = [
        Step(version: 1, name: "readings, forks, chain breaks, stated losses, rejected payloads, replay claims", statements: [
            """
            CREATE TABLE readings(
                gateway text NOT NULL, meter text NOT NULL, epoch text NOT NULL, seq bigint NOT NULL,
                hash bytea NOT NULL, prev bytea NOT NULL, key_id text NOT NULL, envelope text NOT NULL,
                start_ms bigint NOT NULL, end_ms bigint NOT NULL, import_mwh bigint NOT NULL, export_mwh bigint NOT NULL, quality text NOT NULL,
                tariff text NOT NULL, currency text NOT NULL, price_scaled bigint NOT NULL, price_precision bigint NOT NULL,
                amount_exact bigint NOT NULL, amount_scale bigint NOT NULL, record bytea NOT NULL, received_ms bigint NOT NULL, pricing_error text,
                export_price_scaled bigint, export_amount_exact bigint, export_amount_scale bigint,
                PRIMARY KEY (gateway, meter, epoch, seq))
            """,
            "CREATE INDEX readings_by_start ON readings(start_ms)",
            """
            CREATE TABLE forks(
                gateway text NOT NULL, meter text NOT NULL, epoch text NOT NULL, seq bigint NOT NULL,
                stored_hash bytea NOT NULL, other_hash bytea NOT NULL, other_record bytea NOT NULL, seen_ms bigint NOT NULL,
                UNIQUE (gateway, meter, epoch, seq, other_hash))
            """,
            """
            CREATE TABLE chain_breaks(
                gateway text NOT NULL, meter text NOT NULL, epoch text NOT NULL, seq bigint NOT NULL,
                reason text NOT NULL, seen_ms bigint NOT NULL, UNIQUE (gateway, meter, epoch, seq, reason))
            """,
            """
            CREATE TABLE stated_lost(
                gateway text NOT NULL, meter text NOT NULL, epoch text NOT NULL, stated_by_seq bigint NOT NULL,
                from_seq bigint NOT NULL, to_seq bigint NOT NULL, seen_ms bigint NOT NULL,
                PRIMARY KEY (gateway, meter, epoch, stated_by_seq))
            """,
            """
            CREATE TABLE rejected(
                id bigserial PRIMARY KEY, topic text NOT NULL, reason text NOT NULL, payload bytea NOT NULL, seen_ms bigint NOT NULL,
                payload_bytes bigint, payload_sha256 bytea)
            """,
            """
            CREATE TABLE replay_claims(
                gateway text NOT NULL, meter text NOT NULL, epoch text NOT NULL, from_seq bigint NOT NULL, to_seq bigint NOT NULL,
                claimed_by text NOT NULL, until_ms bigint NOT NULL, PRIMARY KEY (gateway, meter, epoch, from_seq))
            """,
            addReadingFunction,
        ]),
    ]

    /// Stores one reading. The per-stream advisory lock orders the writers of one stream across processes, so the
    /// link checks see each other's rows; the result says what happened and which neighbours are stored.
    static let addReadingFunction = """
        CREATE FUNCTION metergate_add_reading(
            p_gateway text, p_meter text, p_epoch text, p_seq bigint, p_hash bytea, p_prev bytea, p_key_id text, p_envelope text,
            p_start_ms bigint, p_end_ms bigint, p_import bigint, p_export bigint, p_quality text, p_tariff text, p_currency text,
            p_price_scaled bigint, p_price_precision bigint, p_amount_exact bigint, p_amount_scale bigint, p_record bytea,
            p_received_ms bigint, p_pricing_error text, p_export_price_scaled bigint, p_export_amount_exact bigint,
            p_export_amount_scale bigint, p_lost_from bigint, p_lost_to bigint,
            p_not_a_chain_start text, p_prev_mismatch text, p_next_mismatch text)
        RETURNS TABLE(outcome text, stored_hash bytea, problems text[], before_stored boolean, after_stored boolean, stated boolean)
        LANGUAGE plpgsql AS $$
        DECLARE
            v_existing bytea;
            v_before bytea;
            v_after bytea;
            v_problems text[] := '{}';
            v_before_stored boolean := false;
            v_after_stored boolean := false;
            v_stated boolean := false;
        BEGIN
            PERFORM pg_advisory_xact_lock(hashtextextended(p_gateway || '/' || p_meter || '/' || p_epoch, 0));
            SELECT r.hash INTO v_existing FROM readings r
                WHERE r.gateway = p_gateway AND r.meter = p_meter AND r.epoch = p_epoch AND r.seq = p_seq;
            IF FOUND THEN
                IF v_existing = p_hash THEN
                    RETURN QUERY SELECT 'duplicate'::text, v_existing, v_problems, false, false, false;
                    RETURN;
                END IF;
                INSERT INTO forks(gateway, meter, epoch, seq, stored_hash, other_hash, other_record, seen_ms)
                    VALUES (p_gateway, p_meter, p_epoch, p_seq, v_existing, p_hash, p_record, p_received_ms) ON CONFLICT DO NOTHING;
                RETURN QUERY SELECT 'fork'::text, v_existing, v_problems, false, false, false;
                RETURN;
            END IF;
            INSERT INTO readings(gateway, meter, epoch, seq, hash, prev, key_id, envelope, start_ms, end_ms, import_mwh, export_mwh,
                quality, tariff, currency, price_scaled, price_precision, amount_exact, amount_scale, record, received_ms, pricing_error,
                export_price_scaled, export_amount_exact, export_amount_scale)
            VALUES (p_gateway, p_meter, p_epoch, p_seq, p_hash, p_prev, p_key_id, p_envelope, p_start_ms, p_end_ms, p_import, p_export,
                p_quality, p_tariff, p_currency, p_price_scaled, p_price_precision, p_amount_exact, p_amount_scale, p_record, p_received_ms,
                p_pricing_error, p_export_price_scaled, p_export_amount_exact, p_export_amount_scale);
            IF p_seq = 1 AND p_prev <> decode(repeat('00', 32), 'hex') THEN
                v_problems := array_append(v_problems, p_not_a_chain_start);
            END IF;
            IF p_seq > 1 THEN
                SELECT r.hash INTO v_before FROM readings r
                    WHERE r.gateway = p_gateway AND r.meter = p_meter AND r.epoch = p_epoch AND r.seq = p_seq - 1;
                v_before_stored := FOUND;
                IF v_before_stored AND v_before <> p_prev THEN v_problems := array_append(v_problems, p_prev_mismatch); END IF;
            END IF;
            -- A statement whose record does not link to the record before it explains nothing.
            IF p_lost_from IS NOT NULL AND cardinality(v_problems) = 0 THEN
                INSERT INTO stated_lost(gateway, meter, epoch, stated_by_seq, from_seq, to_seq, seen_ms)
                    VALUES (p_gateway, p_meter, p_epoch, p_seq, p_lost_from, p_lost_to, p_received_ms) ON CONFLICT DO NOTHING;
                v_stated := FOUND;
            END IF;
            SELECT r.prev INTO v_after FROM readings r
                WHERE r.gateway = p_gateway AND r.meter = p_meter AND r.epoch = p_epoch AND r.seq = p_seq + 1;
            v_after_stored := FOUND;
            IF v_after_stored AND v_after <> p_hash THEN v_problems := array_append(v_problems, p_next_mismatch); END IF;
            INSERT INTO chain_breaks(gateway, meter, epoch, seq, reason, seen_ms)
                SELECT p_gateway, p_meter, p_epoch, p_seq, problem, p_received_ms FROM unnest(v_problems) AS problem ON CONFLICT DO NOTHING;
            RETURN QUERY SELECT 'stored'::text, NULL::bytea, v_problems, v_before_stored, v_after_stored, v_stated;
        END
        $$
        """
}
