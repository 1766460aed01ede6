"""A pymodbus Modbus TCP server for MeterGate's interop tests (a peer nobody on the project wrote).

Reads a JSON spec from argv[1]:
  {"units": {"1": {"values": [{"space": "input"|"holding", "address": N, "type": "float32"|"i32"|...,
                               "word_order": "big"|"little", "value": number}]}}}
encodes every value with pymodbus's own convert_to_registers, serves them on 127.0.0.1 at a free port,
prints "listening <port>" and serves until killed. An optional "port" in the spec serves on that port (a server
started again in place of another, with other values: a meter whose counter jumped while it was away).
"""
import json
import logging
import socket
import sys

from pymodbus.client import ModbusTcpClient
from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext, ModbusSparseDataBlock
from pymodbus.server import StartTcpServer

logging.getLogger("pymodbus").setLevel(logging.ERROR)
DT = ModbusTcpClient.DATATYPE
TYPES = {"u16": DT.UINT16, "i16": DT.INT16, "u32": DT.UINT32, "i32": DT.INT32, "u64": DT.UINT64,
         "i64": DT.INT64, "float32": DT.FLOAT32, "float64": DT.FLOAT64}


def main():
    spec = json.load(open(sys.argv[1]))
    devices = {}
    for unit, device in spec["units"].items():
        spaces = {"input": {}, "holding": {}}
        for v in device["values"]:
            value = v["value"] if v["type"].startswith("float") else int(v["value"])
            words = ModbusTcpClient.convert_to_registers(value, TYPES[v["type"]], word_order=v["word_order"])
            for i, w in enumerate(words):
                spaces[v["space"]][v["address"] + i] = w
        # Block keys are the wire addresses (pymodbus 3.16 no longer shifts them by one). Registers between
        # values read as 0, as a meter answers them, so requests that bridge gaps are served.
        filled = {k: ({a: m.get(a, 0) for a in range(min(m), max(m) + 1)} if m else {0: 0}) for k, m in spaces.items()}
        blocks = {k: ModbusSparseDataBlock(m) for k, m in filled.items()}
        devices[int(unit)] = ModbusDeviceContext(ir=blocks["input"], hr=blocks["holding"])
    port = spec.get("port", 0)
    if not port:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
    print(f"listening {port}", flush=True)
    StartTcpServer(context=ModbusServerContext(devices=devices, single=False), address=("127.0.0.1", port))


main()
