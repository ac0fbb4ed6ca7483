"""The shared param kinds: one meaning, one strictness, wherever they are written."""
import ipaddress

import pytest
from helpers import run_cli, write_yaml

from nmroute.errors import ParamError
from nmroute.fastpath.elements.classify import convert_rules
from nmroute.fastpath.elements.filter import Filter
from nmroute.schema import Name, PortRange, PowerOfTwo, Prefix, Proto, each, parse_int


def test_prefix():
    assert Prefix().convert("198.18.0.0/15") == ipaddress.ip_network("198.18.0.0/15")
    assert Prefix().convert(" 2001:2::/48 ") == ipaddress.ip_network("2001:2::/48")
    assert Prefix().convert("198.18.0.7") == ipaddress.ip_network("198.18.0.7/32")
    with pytest.raises(ParamError, match=r"has host bits set \(did you mean '198.18.0.0/24'\?\)"):
        Prefix().convert("198.18.0.7/24")
    with pytest.raises(ParamError, match="expected an IP prefix"):
        Prefix().convert("198.18.0.0/33")
    with pytest.raises(ParamError, match="expected an IPv4 prefix"):
        Prefix(4).convert("2001:2::/48")
    with pytest.raises(ParamError):
        Prefix().convert(17)


def test_proto_port_range_name_power_of_two():
    assert [Proto().convert(v) for v in ("tcp", "UDP", "icmp6", 253, "17")] == [6, 17, 58, 253, 17]
    with pytest.raises(ParamError, match=r"got 'tcpp' \(did you mean 'tcp'\?\)"):
        Proto().convert("tcpp")
    with pytest.raises(ParamError):
        Proto().convert(256)
    assert PortRange().convert("1024-65535") == (1024, 65535)
    assert PortRange().convert(80) == (80, 80)
    with pytest.raises(ParamError):
        PortRange().convert("90-80")
    assert Name().convert("lan.v6-x") == "lan.v6-x"
    for bad in ("1st", "-x", "a b", "", 3):
        with pytest.raises(ParamError):
            Name().convert(bad)
    assert PowerOfTwo(64, 4096).convert(1024) == 1024
    for bad in (100, 32, 8192):
        with pytest.raises(ParamError, match="a power of two from 64 to 4096"):
            PowerOfTwo(64, 4096).convert(bad)
    assert parse_int("1_000") == 1000 and parse_int("1.5M") == 1_500_000
    assert parse_int(True) is None and parse_int("x") is None


def test_each_names_every_bad_item():
    def conv(i, v):
        if v < 0:
            raise ParamError(f"negative: {v}", (i,))
        return v * 2
    assert each([1, 2], conv) == [2, 4]
    with pytest.raises(ParamError) as e:
        each([1, -1, 2, -3], conv)
    assert [(x.path, str(x)) for x in e.value.issues] == [((1,), "negative: -1"),
                                                         ((3,), "negative: -3")]


@pytest.mark.parametrize("value", ["198.18.0.7/24", "2001:2::1/48"])
def test_classify_and_filter_agree_on_a_prefix_with_host_bits(value):
    """They drifted: classify refused it with a "did you mean", filter took it."""
    net = ipaddress.ip_network(value, strict=False)
    with pytest.raises(ParamError) as c:
        convert_rules([{"output": "a", "dst": value}])
    with pytest.raises(ParamError) as f:
        Filter("fw", {"rules": [{"action": "allow", "dst": value}]})
    assert str(c.value) == str(f.value) == f"{value!r} has host bits set (did you mean '{net}'?)"
    assert c.value.path == f.value.path == (0, "dst")


def test_a_rules_list_reports_every_bad_rule(tmp_path):
    path = write_yaml(tmp_path, """
        ports:
          i: gen:count=1
        elements:
          f:
            type: filter
            rules:
              - {action: allow, dst: 198.18.0.7/24}
              - {action: allow, dst: 198.18.0.0/24}
              - {action: allow, proto: tcpp}
        links:
          - i -> f -> sink
        """)
    r = run_cli("check", path)
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 2, r.err
    assert lines[0].startswith(f"{path}:7:")
    assert "rules[0].dst: '198.18.0.7/24' has host" in lines[0]
    assert lines[1].startswith(f"{path}:9:") and "rules[2].proto: expected tcp" in lines[1]
