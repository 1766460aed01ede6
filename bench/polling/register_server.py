"""A pymodbus Modbus TCP server for the polling benchmark: UNITS units on PORT, each answering the same register
image, read from argv[3] ({"input": {"ADDRESS": WORD, ...}, "holding": {...}}). Unlisted registers between the
lowest and highest listed ones read as 0, as on a meter. Prints "listening PORT" and serves until killed.

    python register_server.py PORT UNITS IMAGE.json
"""
import json
import logging
import sys

from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext, ModbusSparseDataBlock
from pymodbus.server import StartTcpServer

logging.getLogger("pymodbus").setLevel(logging.ERROR)


def block(words):
    if not words:
        return ModbusSparseDataBlock({0: 0})
    low, high = min(words), max(words)
    return ModbusSparseDataBlock({a: words.get(a, 0) for a in range(low, high + 1)})


def main():
    port, units = int(sys.argv[1]), int(sys.argv[2])
    image = json.load(open(sys.argv[3]))
    spaces = {name: {int(a): int(w) for a, w in image.get(name, {}).items()} for name in ("input", "holding")}
    # Each unit its own blocks: a unit's writes (none here) could never show through another.
    devices = {u: ModbusDeviceContext(ir=block(spaces["input"]), hr=block(spaces["holding"])) for u in range(1, units + 1)}
    print(f"listening {port}", flush=True)
    StartTcpServer(context=ModbusServerContext(devices=devices, single=False), address=("127.0.0.1", port))


main()
