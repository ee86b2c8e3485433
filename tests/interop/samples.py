"""Sample IHE PCD-01 messages as bedside monitors and their gateways send them (both NIBP code families)."""

from __future__ import annotations

# A monitor identified by its EUI-64 in OBX-18, NIBP as MDC_PRESS_BLD_NONINV_* (150021/2/3), local time +0100.
# PID carries a name: the gateway must never forward it.
MONITOR_150021 = "\r".join([
    "MSH|^~\\&|MONITOR-GW^0012A1FFFE000001^EUI-64|WARD3|||20261125101502+0100||ORU^R01^ORU_R01|MSG-0001|P|2.6|||NE|AL"
    "||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO",
    "PID|||4711^^^HOSP^MR||Doe^Jane^^^^^L",
    "PV1||I|ICU^1^BED7^WARD3",
    "OBR|1|||182777000^monitoring of patient^SCT|||20261125101500+0100",
    "OBX|1||69837^MDC_DEV_METER_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X|||||||0012A1FFFE000001^^0012A1FFFE000001^EUI-64",
    "OBX|2|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1|72|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R|||20261125101500+0100"
    "||||0012A1FFFE000001^^0012A1FFFE000001^EUI-64",
    "OBX|3|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.2.1.1|97|262688^MDC_DIM_PERCENT^MDC|||||R|||20261125101500+0100",
    "OBX|4|NM|151562^MDC_RESP_RATE^MDC|1.3.1.1|14|264928^MDC_DIM_RESP_PER_MIN^MDC|||||R|||20261125101500+0100",
    "OBX|5|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.4.1.1|128|266016^MDC_DIM_MMHG^MDC|||||R|||20261125101430+0100",
    "OBX|6|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC|1.4.1.2|84|266016^MDC_DIM_MMHG^MDC|||||R|||20261125101430+0100",
    "OBX|7|NM|150023^MDC_PRESS_BLD_NONINV_MEAN^MDC|1.4.1.3|99|266016^MDC_DIM_MMHG^MDC|||||R|||20261125101430+0100",
]) + "\r"
MONITOR_150021_READINGS = [  # what the gateway publishes (epoch ms; 10:14:30 and 10:15:00 at +0100)
    {"ts": 1795598070000, "sys": 128.0, "dia": 84.0, "map": 99.0},
    {"ts": 1795598100000, "hr": 72.0, "spo2": 97.0, "rr": 14.0},
]

# Another vendor's gateway: no device id, known only by its bed (PV1-3); NIBP as MDC_PRESS_CUFF_* (150301/2/3);
# pulse rate from the oximeter (149530); times in OBR-7 only, in UTC.
GATEWAY_150301 = "\r".join([
    "MSH|^~\\&|VENDOR-GW|WARD3|EHR|HOSP|20261125091600+0000||ORU^R01|MSG-0002|P|2.6",
    "PID|||4712^^^HOSP^MR||Roe^Richard",
    "PV1||I|ICU^2^BED8^WARD3",
    "OBR|1|||182777000^monitoring of patient^SCT|||20261125091600+0000",
    "OBX|1|NM|149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.2.1.2|66|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R",
    "OBX|2|NM|150301^MDC_PRESS_CUFF_SYS^MDC|1.4.1.1|141|266016^MDC_DIM_MMHG^MDC|||||R",
    "OBX|3|NM|150302^MDC_PRESS_CUFF_DIA^MDC|1.4.1.2|92|266016^MDC_DIM_MMHG^MDC|||||R",
    "OBX|4|NM|150303^MDC_PRESS_CUFF_MEAN^MDC|1.4.1.3|108|266016^MDC_DIM_MMHG^MDC|||||R",
]) + "\r"
GATEWAY_150301_READINGS = [{"ts": 1795598160000, "hr": 66.0, "sys": 141.0, "dia": 92.0, "map": 108.0}]

MAP_FILE = """
[[device]]
id = "0012A1FFFE000001"
site = "{site}"
chair = "c-07"

[[bed]]
facility = "WARD3"
bed = "BED8"
site = "{site}"
chair = "c-08"
"""


def variant(message: str, old: str, new: str) -> str:
    """Return a sample with one piece replaced (for refusal cases)."""
    assert old in message, old
    return message.replace(old, new, 1)


# One message for every refusal code of interop.hl7.REFUSALS except broker_unavailable (tested with no broker).
REFUSAL_CASES: dict[str, str] = {
    "not_hl7": "hello, this is not HL7\r",
    "not_oru_r01": variant(MONITOR_150021, "ORU^R01^ORU_R01", "ADT^A01^ADT_A01"),
    "no_control_id": variant(MONITOR_150021, "|MSG-0001|", "||"),
    "unmapped_device": variant(variant(GATEWAY_150301, "BED8", "BED99"), "MSG-0002", "MSG-0003"),
    "no_observation": "\r".join([*GATEWAY_150301.split("\r")[:4],
                                  "OBX|1|NM|150344^MDC_TEMP^MDC|1.5.1.1|36.8|268192^MDC_DIM_DEGC^MDC|||||R", ""]),
    "bad_unit": variant(GATEWAY_150301, "|141|266016^MDC_DIM_MMHG^MDC|", "|141|266008^MDC_DIM_KILO_PASCAL^MDC|"),
    "bad_time": variant(MONITOR_150021, "|||20261125101500+0100||||0012", "|||20261125101500||||0012"),
    "bad_value": variant(GATEWAY_150301, "|66|264864", "|abc|264864"),
}
EXTRA_REFUSALS: dict[str, str] = {  # the contract's own checks, reported through bad_value
    "implausible": variant(GATEWAY_150301, "|66|264864", "|400|264864"),
    "sys_not_above_dia": variant(GATEWAY_150301, "|141|266016", "|80|266016"),
}
