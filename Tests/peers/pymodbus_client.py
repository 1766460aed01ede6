"""A pymodbus client for MeterGate's interop tests: reads blocks and decodes fields with pymodbus alone.

argv: tcp HOST PORT SPEC.json   or   rtu DEVICE BAUD SPEC.json
SPEC: {"reads": [{"unit": U, "space": "input"|"holding", "address": A, "count": N,
                  "fields": [{"quantity": Q, "address": A, "type": T, "word_order": W, "scale": S,
                              "unit_factor": F, "sf_address": A or null}]}]}
Prints JSON: [{"unit": U, "address": A, "registers": [...], "values": {Q: float.hex(value)}}].
"""
import json
import logging
import sys

from pymodbus.client import ModbusSerialClient, ModbusTcpClient

logging.getLogger("pymodbus").setLevel(logging.ERROR)
DT = ModbusTcpClient.DATATYPE
TYPES = {"u16": (DT.UINT16, 1), "i16": (DT.INT16, 1), "u32": (DT.UINT32, 2), "i32": (DT.INT32, 2),
         "u64": (DT.UINT64, 4), "i64": (DT.INT64, 4), "float32": (DT.FLOAT32, 2), "float64": (DT.FLOAT64, 4)}


def main():
    if sys.argv[1] == "tcp":
        client = ModbusTcpClient(sys.argv[2], port=int(sys.argv[3]), timeout=2)
    else:
        client = ModbusSerialClient(sys.argv[2], baudrate=int(sys.argv[3]), timeout=2)
    spec = json.load(open(sys.argv[4]))
    if not client.connect():
        sys.exit("cannot connect")
    out = []
    for r in spec["reads"]:
        read = client.read_input_registers if r["space"] == "input" else client.read_holding_registers
        rsp = read(r["address"], count=r["count"], device_id=r["unit"])
        if rsp.isError():
            sys.exit(f"read {r} failed: {rsp}")
        regs = rsp.registers
        values = {}
        for f in r["fields"]:
            dt, n = TYPES[f["type"]]
            off = f["address"] - r["address"]
            v = client.convert_from_registers(regs[off:off + n], dt, word_order=f["word_order"])
            if f["sf_address"] is not None:
                sf = client.convert_from_registers([regs[f["sf_address"] - r["address"]]], DT.INT16)
                v = v * 10 ** sf if sf >= 0 else v / 10 ** -sf
            # As hex, so the exact double survives JSON (decimal text need not parse back to the same bits).
            values[f["quantity"]] = float(v * f["scale"] * f["unit_factor"]).hex()
        out.append({"unit": r["unit"], "address": r["address"], "registers": regs, "values": values})
    client.close()
    print(json.dumps(out))


main()
