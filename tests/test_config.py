"""Pipeline YAML: every error kind with its exact message and file:line:col.

Runs against the fake element and port classes in fakes_registry.py, so it
needs no built fast path. Each test writes `p.yaml` into a temporary directory
that is also the current one, so locations read `p.yaml:LINE:COL`.
"""
import os
import sys
import textwrap

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # fakes_registry sits beside this file
import fakes_registry

from nmroute import registry
from nmroute.config.graph import format_graph, to_dot
from nmroute.errors import ParamError
from nmroute.config.pipeline import (
    ConfigError,
    Link,
    Loc,
    load_pipeline,
    load_pipelines,
)
from nmroute.config.portname import parse_port_name
from nmroute.config.yamlloc import load_yaml

# The real registry, kept before the fakes replace it (see the real_registry fixture).
REAL_REGISTRY = (registry.element_types, registry.port_kinds)


@pytest.fixture(autouse=True)
def fake_registry(monkeypatch, tmp_path):
    fakes_registry.install(monkeypatch)
    monkeypatch.chdir(tmp_path)


def write(text: str, name: str = "p.yaml") -> str:
    with open(name, "w") as f:
        f.write(textwrap.dedent(text))
    return name


def errors(text: str) -> list[str]:
    """The errors loading `text` gives, one string each."""
    with pytest.raises(ConfigError) as e:
        load_pipeline(write(text))
    assert str(e.value) == "\n".join(str(i) for i in e.value.issues)
    return str(e.value).splitlines()


def load(text: str):
    return load_pipeline(write(text))


# --- the YAML itself ---------------------------------------------------------

def test_yaml_syntax_error_has_its_location():
    assert errors("""\
        ports:
          src: gen
         bad: x
        """) == [("p.yaml:3:2: invalid YAML: expected <block end>, but found "
                  "'<block mapping start>' (while parsing a block mapping at 1:1)")]


def test_unclosed_quote():
    [err] = errors('links:\n  - "src -> sink\n')
    assert err.startswith("p.yaml:3:1: invalid YAML: found unexpected end of stream")


def test_empty_file():
    assert errors("") == [
        "p.yaml:1:1: empty file; a pipeline needs at least 'links' (and usually 'ports')"]


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_pipeline("nope.yaml")
    assert str(e.value) == "nope.yaml:1:1: cannot read: No such file or directory"


def test_top_level_must_be_a_mapping():
    assert errors("- src -> sink\n") == [
        "p.yaml:1:1: expected a mapping with ports, elements and links, got a list"]


def test_duplicate_key():
    assert errors("""\
        ports:
          src: gen
          src: gen
        links:
          - src -> sink
        """) == ["p.yaml:3:3: duplicate key 'src' (first at p.yaml:2:3)"]


def test_keys_stay_text():
    # PyYAML would make `on` True and `1` an int; names must stay names.
    data, issues = load_yaml(write("on: 1\n1: on\n"))
    assert issues == []
    assert data == {"on": 1, "1": True}
    assert str(data.key_loc("1")) == "p.yaml:2:1"
    assert str(data.value_loc("1")) == "p.yaml:2:4"


def test_unknown_top_level_key():
    assert errors("""\
        elments:
          c1: counter
        links:
          - gen0 -> sink
        """)[0] == "p.yaml:1:1: unknown key 'elments' (did you mean 'elements'?)"


def test_unknown_top_level_key_far_from_any():
    assert errors("""\
        colour: blue
        links:
          - src -> sink
        ports:
          src: gen
        """) == ["p.yaml:1:1: unknown key 'colour'"]


def test_section_of_wrong_shape():
    assert errors("""\
        ports:
          - gen
        links:
          - c1 -> sink
        elements:
          c1: counter
        """) == [
        "p.yaml:2:3: ports: expected a mapping of NAME: PORT, got a list",
        "p.yaml:6:3: element 'c1' (counter) receives no packets: no link leads into it",
    ]


def test_settings_of_wrong_shape():
    assert errors("""\
        settings: 256
        ports: {src: gen}
        links: [src -> sink]
        """) == ["p.yaml:1:11: settings: expected a mapping like {batch: 256}, got 256"]


def test_links_of_wrong_shape():
    assert errors("""\
        ports: {src: gen}
        links: src -> sink
        """) == [
        "p.yaml:2:8: links: expected a list of chains like '- src -> sink', got 'src -> sink'"]


def test_link_of_wrong_shape():
    assert errors("""\
        ports: {src: gen}
        links:
          - src: sink
        """) == [
        "p.yaml:3:5: links[0]: expected a chain like 'src -> c1 -> sink', got a mapping"]


# --- settings ----------------------------------------------------------------

def test_settings_defaults():
    p = load("ports: {src: gen}\nlinks: [src -> sink]\n")
    assert p.settings == {"batch": 256, "buffer_size": 2048, "ring_size": 1024,
                          "zero_copy": True}


def test_settings_given():
    p = load("""\
        settings: {batch: 32, buffer_size: 4096, ring_size: 256}
        ports: {src: gen}
        links: [src -> sink]
        """)
    assert p.settings == {"batch": 32, "buffer_size": 4096, "ring_size": 256,
                          "zero_copy": True}


def test_settings_bad_values_and_unknown():
    assert errors("""\
        settings:
          batch: 512
          ring_size: 1000
          bufer_size: 4096
        ports: {src: gen}
        links: [src -> sink]
        """) == [
        "p.yaml:2:10: settings.batch: expected an integer from 1 to 256, got 512",
        "p.yaml:3:14: settings.ring_size: expected a power of two from 64 to 16384, got 1000",
        "p.yaml:4:3: settings: unknown setting 'bufer_size' (did you mean 'buffer_size'?)",
    ]


# --- names -------------------------------------------------------------------

def test_name_defaults_to_file_stem():
    p = load_pipeline(write("ports: {src: gen}\nlinks: [src -> sink]\n", "edge-1.yaml"))
    assert p.name == "edge-1"
    assert p.loc == Loc("edge-1.yaml", 1, 1)


def test_bad_pipeline_name():
    assert errors("""\
        name: my pipeline
        ports: {src: gen}
        links: [src -> sink]
        """) == [
        ("p.yaml:1:7: name: expected a name of letters, digits, '_', '.' and '-', "
         "got 'my pipeline'")]


def test_drop_is_reserved():
    assert errors("""\
        ports: {src: gen}
        elements:
          drop: counter
        links: [src -> drop]
        """) == [("p.yaml:3:3: 'drop' is the built-in discard element; "
                  "give this element another name")]


def test_invalid_name():
    assert errors("""\
        ports:
          2fast: gen
        links: [sink -> sink]
        """)[0] == ("p.yaml:2:3: port name '2fast' is not valid: use letters, digits, "
                    "'_', '.' and '-', starting with a letter or '_'")


def test_name_both_port_and_element():
    assert errors("""\
        ports:
          x: gen
        elements:
          x: counter
        links: [x -> sink]
        """) == ["p.yaml:4:3: 'x' is declared both as a port (at p.yaml:2:3) and as an element"]


# --- ports -------------------------------------------------------------------

def test_parse_port_name():
    assert parse_port_name("gen:count=1000,size=60-1500,proto=tcp") == (
        "gen", {"count": "1000", "size": "60-1500", "proto": "tcp"})
    assert parse_port_name("pcap:dir/a,b=c.pcap") == ("pcap", {"file": "dir/a,b=c.pcap"})
    assert parse_port_name("pipe:a2b") == ("pipe", {"name": "a2b"})
    assert parse_port_name("sink") == ("sink", {})
    assert parse_port_name("gen") == ("gen", {})


@pytest.mark.parametrize("name, message, offset", [
    ("pcp:x", "unknown port type 'pcp' (did you mean 'pcap'?)", 0),
    ("in.pcap", "unknown port type 'in.pcap' (did you mean 'pcap'?)", 0),
    ("eth0", ("unknown port type 'eth0' (a port is written SCHEME[:ARG], "
              "like 'pcap:in.pcap')"), 0),
    ("gen:count=1,size", "expected KEY=VALUE after 'gen:', got 'size'", 12),
    ("gen:count=1, count=2", "'count' is given twice", 13),
    ("", "expected a port name like 'pcap:in.pcap' or 'gen:count=1000', got ''", 0),
])
def test_parse_port_name_errors(name, message, offset):
    with pytest.raises(ParamError) as e:
        parse_port_name(name)
    assert str(e.value) == message
    assert e.value.offset == offset


def test_port_unknown_scheme():
    assert errors("""\
        ports:
          src: gne:count=1
        links: [src -> sink]
        """) == ["p.yaml:2:8: port 'src': unknown port type 'gne' (did you mean 'gen'?)"]


def test_port_not_built_says_why():
    """A port whose library was missing at build time (setup.py skipped it:
    the fake registry has no xdp port, as such a build has none)."""
    assert errors("""\
        ports:
          nic: "xdp:eth0"
        links: [nic -> sink]
        """) == ["p.yaml:2:9: port 'nic': port type 'xdp' is not built: libxdp-dev and "
                 "libbpf-dev were missing when nmroute was built (install them, then run "
                 "./bootstrap build)"]


def test_port_vale_name_keeps_its_switch(monkeypatch):
    monkeypatch.setattr(registry, "port_kinds", REAL_REGISTRY[1])
    assert parse_port_name("vale0:p1") == ("vale", {"name": "vale0:p1"})


def test_port_param_error_points_into_the_string():
    assert errors("""\
        ports:
          a: gen:count=ten
          b: "gen:count=1,size=10"
        links: [a -> sink, b -> sink]
        """) == [
        "p.yaml:2:10: port 'a' (gen): count: expected an integer >= 0, got 'ten'",
        ("p.yaml:3:19: port 'b' (gen): size: expected a frame length or a range like 42-9216, "
         "within 42..9216, got '10'"),
    ]


def test_port_unknown_param_in_string():
    assert errors("""\
        ports:
          src: gen:count=1,sise=60
        links: [src -> sink]
        """) == ["p.yaml:2:20: port 'src' (gen): unknown param 'sise' (did you mean 'size'?)"]


def test_port_bad_item_in_string():
    assert errors("""\
        ports:
          src: gen:count=1,size
        links: [src -> sink]
        """) == ["p.yaml:2:20: port 'src': expected KEY=VALUE after 'gen:', got 'size'"]


def test_port_missing_arg():
    assert errors("""\
        ports:
          trace: pcap
        links: [trace -> sink]
        """) == [("p.yaml:2:10: port 'trace' (pcap): missing required param 'file' "
                  "(write 'pcap:FILE')")]


def test_port_takes_no_params():
    assert errors("""\
        ports:
          src: gen
          out: sink:fast=1
        links: [src -> out]
        """) == ["p.yaml:3:13: port 'out' (sink): unknown param 'fast'; it takes no params"]


def test_port_mapping_form():
    p = load("""\
        ports:
          src: gen
          out: {port: "pcap:out.pcap", precision: ns}
        links: [src -> out]
        """)
    assert p.ports["out"].params == {
        "file": "out.pcap", "precision": "ns", "snaplen": 65535, "loop": 1}
    assert p.ports["out"].spec == "pcap:out.pcap"


def test_port_mapping_form_errors():
    assert errors("""\
        ports:
          src: gen
          a: {port: "pcap:a.pcap", precision: ms}
          b: {precision: ns}
          c: {port: "gen:count=1", count: 2}
          d: [pcap, x]
        links: [src -> a, b -> sink, c -> sink, d -> sink]
        """) == [
        "p.yaml:3:39: port 'a' (pcap): precision: expected one of 'us', 'ns', got 'ms'",
        ("p.yaml:4:6: port 'b': missing 'port', the port name "
         "(like {port: 'pcap:out.pcap', precision: ns})"),
        ("p.yaml:5:28: port 'c' (gen): param 'count' is given both in the port name "
         "(p.yaml:5:18) and as a key"),
        ("p.yaml:6:6: port 'd': expected a port name like 'pcap:in.pcap' or a mapping "
         "with 'port', got a list"),
    ]


def test_port_check_gets_rx_and_tx():
    # The fake pcap's check() wants an existing file only when it is read.
    assert errors("""\
        ports:
          src: gen
          trace: pcap:missing.pcap
          out: pcap:missing-too.pcap
        links: [trace -> sink, src -> out]
        """) == ["p.yaml:3:10: port 'trace' (pcap): file: no such file: 'missing.pcap'"]


def test_port_check_cross_params():
    assert errors("""\
        ports:
          src: {port: gen, family: ipv6, src: 198.18.0.1}
        links: [src -> sink]
        """) == ["p.yaml:2:8: port 'src' (gen): family ipv6 but addresses are IPv4"]


# --- elements ----------------------------------------------------------------

def test_unknown_element_type():
    assert errors("""\
        ports: {src: gen}
        elements:
          c1: countr
          c2: {type: firewall}
        links: [src -> c1 -> c2 -> sink]
        """) == [
        "p.yaml:3:7: element 'c1': unknown element type 'countr' (did you mean 'counter'?)",
        "p.yaml:4:14: element 'c2': unknown element type 'firewall'",
    ]


def test_element_of_wrong_shape():
    assert errors("""\
        ports: {src: gen}
        elements:
          c1:
          c2: {file: x}
        links: [src -> c1 -> c2 -> sink]
        """) == [
        ("p.yaml:3:6: element 'c1': expected a type like 'counter' or a mapping with 'type', "
         "got nothing"),
        "p.yaml:4:7: element 'c2': missing 'type' (like {type: counter})",
    ]


def test_element_params():
    assert errors("""\
        ports: {src: gen}
        elements:
          a: {type: pcap-tap, file: a.pcap, snaplen: 10, prec: ns}
          b: {type: pcap-tap}
          c: {type: counter, every: 5}
        links: [src -> a -> b -> c -> sink]
        """) == [
        ("p.yaml:3:46: element 'a' (pcap-tap): snaplen: expected an integer from 64 to 65535, "
         "got 10"),
        "p.yaml:3:50: element 'a' (pcap-tap): unknown param 'prec' (did you mean 'precision'?)",
        "p.yaml:4:6: element 'b' (pcap-tap): missing required param 'file'",
        "p.yaml:5:22: element 'c' (counter): unknown param 'every'; it takes no params",
    ]


def test_misspelt_required_param_is_one_error():
    assert errors("""\
        ports: {src: gen}
        elements:
          tap: {type: pcap-tap, fiel: tap.pcap}
        links: [src -> tap -> sink]
        """) == [("p.yaml:3:25: element 'tap' (pcap-tap): unknown param 'fiel' "
                  "(did you mean 'file'?)")]


def test_output_path_directory_must_exist():
    assert errors("""\
        ports: {src: gen}
        elements:
          tap: {type: pcap-tap, file: no/such/dir/tap.pcap}
        links: [src -> tap -> sink]
        """) == [(f"p.yaml:3:31: element 'tap' (pcap-tap): file: directory "
                  f"{os.path.abspath('no/such/dir')} does not exist (for 'no/such/dir/tap.pcap')")]


def test_nested_param_error_points_at_the_nested_value():
    assert errors("""\
        ports: {src: gen}
        elements:
          fw:
            type: filter
            rules:
              - dst: 198.18.0.0/15
              - dst: 198.19.0.0/16
              - dst: 198.18.0.0/33
        links: ["src -> fw -> sink", "fw [reject] -> drop"]
        """) == [("p.yaml:8:14: element 'fw' (filter): rules[2].dst: expected an IPv4 prefix "
                  "like 198.18.0.0/15, got '198.18.0.0/33'")]


def test_element_check():
    assert errors("""\
        ports: {src: gen}
        elements:
          fw: filter
        links: ["src -> fw -> sink", "fw [reject] -> drop"]
        """) == [("p.yaml:3:7: element 'fw' (filter): with no rules and default 'pass' "
                  "the filter does nothing; remove it")]


# --- chains: syntax ----------------------------------------------------------

@pytest.mark.parametrize("chain, col, message", [
    ("src c1 -> sink", 9, "expected '->' between 'src' and 'c1'"),
    ("src -> c1 ->", 15, "expected a name after '->'"),
    ("src -> -> sink", 12, "expected a name before '->'"),
    ("-> sink", 5, "expected a name before '->'"),
    ("src -> [1] c1 -> sink", 12,
     "elements have one input; write 'c1 [1] -> sink' to pick c1's output 1"),
    ("src -> c1 [] -> sink", 15, "empty output selector '[]'"),
    ("src -> c1 [0][0] -> sink", 18, "'c1' already has an output selector"),
    ("src -> c1 -> sink [0]", 23, "output selector '[0]' leads nowhere: nothing follows 'sink'"),
    ("src", 5, "a chain needs at least two names joined by '->', like 'src -> sink'"),
    ("src => sink", 9, "unexpected '='; a chain is NAME [OUT] -> NAME ..."),
    ("src -> c1 [0 -> sink", 15, "'[' has no closing ']'"),
    ("'   '", 6, "empty chain; write one like 'src -> sink'"),
])
def test_chain_syntax(chain, col, message):
    assert errors(f"""\
        ports: {{src: gen}}
        elements: {{c1: counter}}
        links:
          - {chain}
          - src -> c1 -> sink
        """)[0] == f"p.yaml:4:{col}: links[0]: {message}"


def test_chain_columns_in_quoted_and_flow_strings():
    assert errors("""\
        ports: {src: gen}
        links:
          - "src -> nowhere"
          - 'src->nowhere'
        """) == [
        "p.yaml:3:13: links[0]: unknown name 'nowhere'",
        "p.yaml:4:11: links[1]: unknown name 'nowhere'",
    ]


def test_whitespace_is_optional():
    p = load("""\
        ports: {src: gen}
        elements: {t: tee}
        links: ["src->t[copy]->sink", "t[0]->drop"]
        """)
    assert p.links == [
        Link("src", 0, "t", Loc("p.yaml", 3, 10)),
        Link("t", 1, "sink", Loc("p.yaml", 3, 16)),
        Link("t", 0, "drop", Loc("p.yaml", 3, 33)),
    ]


# --- chains: meaning ---------------------------------------------------------

def test_unknown_name():
    assert errors("""\
        ports: {source: gen}
        elements: {counter1: counter}
        links:
          - source -> countr1 -> sink
        """) == [
        "p.yaml:4:15: links[0]: unknown name 'countr1' (did you mean 'counter1'?)"]


def test_unknown_output():
    assert errors("""\
        ports: {src: gen}
        elements: {c1: counter, t: tee}
        links:
          - src -> t [cpy] -> c1 -> sink
          - t [2] -> c1
        """) == [
        ("p.yaml:4:14: links[0]: element 't' (tee) has no output 'cpy'; "
         "its outputs are: out, copy"),
        "p.yaml:5:7: links[1]: element 't' (tee) has no output '2'; its outputs are: out, copy",
    ]


def test_element_without_outputs_cannot_feed():
    assert errors("""\
        ports: {src: gen}
        elements: {d: drop}
        links:
          - src -> d -> sink
        """) == [("p.yaml:4:12: links[0]: element 'd' (drop) has no outputs; "
                  "it can only end a chain")]


def test_output_wired_twice():
    assert errors("""\
        ports: {src: gen}
        elements: {c1: counter, t: tee}
        links:
          - src -> t -> c1 -> sink
          - t [copy] -> drop
          - t [out] -> drop
        """) == [("p.yaml:6:7: links[2]: output 'out' of element 't' (tee) is already wired to "
                  "'c1' at p.yaml:4:12; use a tee to send packets to both")]


def test_port_read_by_two_chains():
    assert errors("""\
        ports: {src: gen}
        elements: {c1: counter, c2: counter}
        links:
          - src -> c1 -> sink
          - src -> c2 -> sink
        """) == [("p.yaml:5:5: links[1]: port 'src' (gen) is already wired to 'c1' at "
                  "p.yaml:4:5; use a tee to send packets to both")]


def test_fan_in_into_an_element_and_a_tx_port():
    p = load("""\
        ports: {a: gen, b: gen, c: gen, out: pcap:out.pcap}
        elements: {c1: counter}
        links:
          - a -> c1 -> out
          - b -> c1
          - c -> out
        """)
    assert p.upstream("c1") == [("a", 0), ("b", 0)]
    assert p.upstream("out") == [("c1", 0), ("c", 0)]


def test_port_direction():
    assert errors("""\
        ports: {src: gen, out: sink}
        elements: {c1: counter}
        links:
          - out -> c1 -> src
        """) == [
        "p.yaml:4:5: links[0]: port 'out' (sink) can only be written to",
        "p.yaml:4:18: links[0]: port 'src' (gen) can only be read from",
    ]


def test_builtin_sink_cannot_be_read():
    assert errors("""\
        ports: {src: gen}
        links: [src -> sink, sink -> drop]
        """) == ["p.yaml:2:22: links[1]: port 'sink' (sink) can only be written to"]


def test_pcap_read_and_written():
    assert errors("""\
        ports: {trace: pcap:t.pcap}
        elements: {c1: counter}
        links:
          - trace -> c1 -> trace
        """) == [("p.yaml:4:20: links[0]: port 'trace' (pcap) is both read and written; "
                  "a pcap file is either replayed or captured: declare one port for each")]


def test_pipe_read_and_written():
    assert errors("""\
        ports: {p: pipe:loop}
        elements: {c1: counter}
        links:
          - p -> c1
          - c1 -> p
        """) == [("p.yaml:5:11: links[1]: port 'p' (pipe) is both read and written; "
                  "a pipe joins two pipelines; its other end belongs in another pipeline")]


def test_two_ports_on_one_pipe_or_written_file():
    open("t.pcap", "w").close()
    assert errors("""\
        ports:
          a: pipe:x
          b: pipe:x
          in1: pcap:t.pcap
          out1: pcap:t.pcap
          src: gen
        links: [a -> sink, in1 -> b, src -> out1]
        """) == [
        ("p.yaml:3:3: port 'b' (pipe): pipe 'x' is also used by port 'a' at p.yaml:2:3; "
         "a pipe joins two pipelines, one end in each"),
        ("p.yaml:5:3: port 'out1' (pcap): file 't.pcap' is also used by port 'in1' at "
         "p.yaml:4:3; a file being written can have only one port"),
    ]


def test_port_in_the_middle():
    assert errors("""\
        ports: {src: gen, mid: pcap:m.pcap}
        links:
          - src -> mid -> sink
        """) == [("p.yaml:3:12: links[0]: port 'mid' (pcap) is in the middle of a chain; "
                  "a port can only start (read) or end (write) one")]


def test_selector_on_a_port():
    assert errors("""\
        ports: {src: gen}
        links:
          - src [0] -> sink
        """) == ["p.yaml:3:9: links[0]: port 'src' (gen) has a single output; remove '[0]'"]


def test_cycle_is_named():
    assert errors("""\
        ports: {src: gen}
        elements: {a: tee, b: counter}
        links:
          - src -> a -> b
          - b -> a
          - a [copy] -> sink
        """) == ["p.yaml:5:5: links[1]: these links form a cycle: a -> b -> a"]


def test_self_loop():
    assert errors("""\
        ports: {src: gen}
        elements: {a: tee}
        links: [src -> a -> sink, "a [copy] -> a"]
        """) == ["p.yaml:3:30: links[1]: these links form a cycle: a -> a"]


def test_unconnected_output():
    assert errors("""\
        ports: {src: gen}
        elements:
          t: tee
        links:
          - src -> t -> sink
        """) == [("p.yaml:3:3: output 'copy' of element 't' (tee) is not connected; "
                  "wire it to 'drop' to discard")]


def test_explicit_drop_connects_an_output():
    p = load("""\
        ports: {src: gen}
        elements: {t: tee}
        links:
          - src -> t -> sink
          - t [1] -> drop
        """)
    assert p.downstream("t") == [(0, "sink"), (1, "drop")]
    assert p.elements["drop"].cls is fakes_registry.Drop


def test_element_receives_no_packets():
    assert errors("""\
        ports: {src: gen}
        elements: {c1: counter, c2: counter}
        links:
          - src -> c1 -> sink
          - c2 -> sink
        """) == [("p.yaml:2:25: element 'c2' (counter) receives no packets: "
                  "no link leads into it")]


def test_declared_but_not_used():
    assert errors("""\
        ports: {src: gen, spare: gen}
        elements: {c1: counter, c9: counter}
        links:
          - src -> c1 -> sink
        """) == [
        "p.yaml:1:19: port 'spare' (gen) is declared but not used in links",
        "p.yaml:2:25: element 'c9' (counter) is declared but not used in links",
    ]


def test_empty_links():
    assert errors("""\
        ports: {src: gen}
        links: []
        """) == [("p.yaml:2:1: links: no chains; a pipeline needs at least one, like "
                  "'src -> sink'")]


def test_missing_links():
    assert errors("ports: {src: gen}\n") == [
        "p.yaml:1:1: links: no chains; a pipeline needs at least one, like 'src -> sink'"]


# --- all at once -------------------------------------------------------------

def test_all_errors_at_once_sorted_by_location():
    e = errors("""\
        name: demo
        settings: {batch: 0}
        ports:
          src: gen:count=-1
          tap: pcap
        elements:
          c1: countr
          fw: {type: filter, rules: [{dst: 10.0.0.0/40}]}
        links:
          - src -> c1 -> sinc
          - fw [nope] -> drop
        """)
    assert e == [
        "p.yaml:2:19: settings.batch: expected an integer from 1 to 256, got 0",
        "p.yaml:4:12: port 'src' (gen): count: expected an integer >= 0, got '-1'",
        "p.yaml:5:8: port 'tap' (pcap): missing required param 'file' (write 'pcap:FILE')",
        "p.yaml:7:7: element 'c1': unknown element type 'countr' (did you mean 'counter'?)",
        ("p.yaml:8:36: element 'fw' (filter): rules[0].dst: expected an IPv4 prefix like "
         "198.18.0.0/15, got '10.0.0.0/40'"),
        "p.yaml:10:18: links[0]: unknown name 'sinc' (did you mean 'sink'?)",
        ("p.yaml:11:8: links[1]: element 'fw' (filter) has no output 'nope'; "
         "its outputs are: out, reject"),
    ]


# --- the model ---------------------------------------------------------------

QUICKSTART = """\
    name: quickstart
    settings:
      batch: 64
    ports:
      src: "gen:count=1000,size=60-1500,proto=tcp"
      trace: pcap:in.pcap
      out: {port: "pcap:out.pcap", precision: ns}
    elements:
      c1: counter
      t: tee
      tap: {type: pcap-tap, file: tap.pcap}
    links:
      - src -> c1 -> t
      - t [copy] -> tap -> sink
      - t [0] -> out
      - trace -> drop
    """


def test_valid_pipeline_model():
    open("in.pcap", "w").close()
    p = load(QUICKSTART)
    assert p.name == "quickstart"
    assert p.path == "p.yaml"
    assert p.settings == {"batch": 64, "buffer_size": 2048, "ring_size": 1024,
                          "zero_copy": True}
    assert list(p.ports) == ["src", "trace", "out", "sink"]
    src = p.ports["src"]
    assert (src.spec, src.cls, src.rx, src.tx, src.loc) == (
        "gen:count=1000,size=60-1500,proto=tcp", fakes_registry.Gen, True, False,
        Loc("p.yaml", 5, 3))
    assert src.params["count"] == 1000
    assert src.params["size"] == (60, 1500)
    assert src.params["proto"] == "tcp"
    assert src.params["rate"] == 0
    assert (p.ports["out"].rx, p.ports["out"].tx) == (False, True)
    assert p.ports["sink"].cls is fakes_registry.Sink
    assert p.ports["sink"].tx
    assert list(p.elements) == ["c1", "t", "tap", "drop"]
    assert p.elements["tap"].params == {"file": "tap.pcap", "precision": "us", "snaplen": 65535}
    assert p.elements["c1"].loc == Loc("p.yaml", 9, 3)
    assert [(lk.src, lk.src_out, lk.dst) for lk in p.links] == [
        ("src", 0, "c1"), ("c1", 0, "t"), ("t", 1, "tap"), ("tap", 0, "sink"),
        ("t", 0, "out"), ("trace", 0, "drop"),
    ]
    assert p.links[2].loc == Loc("p.yaml", 14, 7)
    assert p.downstream("t") == [(0, "out"), (1, "tap")]
    assert p.output_name("t", 1) == "copy"
    assert [x.name for x in p.rx_ports()] == ["src", "trace"]
    assert [x.name for x in p.tx_ports()] == ["out", "sink"]


def test_declared_sink_replaces_the_builtin():
    p = load("""\
        ports: {src: gen, sink: pcap:all.pcap}
        links: [src -> sink]
        """)
    assert p.ports["sink"].cls is fakes_registry.Pcap


def test_format_graph():
    open("in.pcap", "w").close()
    text = format_graph(load(QUICKSTART))
    assert text.splitlines() == [
        "pipeline quickstart (p.yaml)",
        "settings: batch=64 buffer_size=2048 ring_size=1024 zero_copy=True",
        "ports:",
        "  src    gen    rx    count=1000 size=60-1500 proto=tcp",
        "  trace  pcap   rx    file=in.pcap",
        "  out    pcap   tx    file=out.pcap precision=ns",
        "  sink   sink   tx",
        "elements:",
        "  c1    counter",
        "  t     tee",
        "  tap   pcap-tap file=tap.pcap",
        "  drop  drop",
        "links:",
        "  src -> c1",
        "  c1 -> t",
        "  t [copy] -> tap",
        "  tap -> sink",
        "  t [out] -> out",
        "  trace -> drop",
    ]


def test_to_dot():
    open("in.pcap", "w").close()
    dot = to_dot(load(QUICKSTART))
    assert dot.startswith('digraph "quickstart" {\n')
    assert dot.rstrip().endswith("}")
    assert dot.count("{") == dot.count("}")
    assert '"src" [shape=box, label="src\\ngen:count=1000,size=60-1500,proto=tcp (rx)"];' in dot
    assert '"t" [shape=ellipse, label="t\\ntee"];' in dot
    assert '"t" -> "tap" [label="copy"];' in dot
    assert '"src" -> "c1";' in dot  # one output: no label


# --- several pipelines -------------------------------------------------------

A2B = """\
    name: a
    ports: {src: gen, to_b: pipe:a2b}
    links: [src -> to_b]
    """
B = """\
    name: b
    ports: {from_a: pipe:a2b}
    links: [from_a -> sink]
    """


def test_pipes_join_pipelines():
    a, b = load_pipelines([write(A2B, "a.yaml"), write(B, "b.yaml")])
    assert (a.name, b.name) == ("a", "b")
    assert b.ports["from_a"].rx


def test_pipe_read_but_never_written():
    with pytest.raises(ConfigError) as e:
        load_pipelines([write(B, "b.yaml")])
    assert str(e.value) == ("b.yaml:2:9: port 'from_a' (pipe): pipe 'a2b' is read here but "
                            "no other pipeline writes it")


def test_pipe_written_twice_and_duplicate_names():
    with pytest.raises(ConfigError) as e:
        load_pipelines([write(A2B, "a.yaml"), write(A2B, "a2.yaml"), write(B, "b.yaml")])
    assert str(e.value).splitlines() == [
        "a2.yaml:1:7: pipeline name 'a' is already used by a.yaml:1:7",
        ("a2.yaml:2:19: port 'to_b' (pipe): pipe 'a2b' is already written by pipeline 'a' "
         "at a.yaml:2:19"),
    ]


def test_errors_of_every_file_are_collected():
    bad1 = write("ports: {src: gne}\nlinks: [src -> sink]\n", "x.yaml")
    bad2 = write("links: [src -> sink]\n", "y.yaml")
    with pytest.raises(ConfigError) as e:
        load_pipelines([bad1, bad2])
    assert str(e.value).splitlines() == [
        "x.yaml:1:14: port 'src': unknown port type 'gne' (did you mean 'gen'?)",
        "y.yaml:1:9: links[0]: unknown name 'src'",
    ]


def test_pipe_written_but_never_read():
    with pytest.raises(ConfigError) as e:
        load_pipelines([write(A2B, "a.yaml")])
    assert str(e.value) == ("a.yaml:2:19: port 'to_b' (pipe): pipe 'a2b' is written here but "
                            "no other pipeline reads it")


# --- the real classes, once the fast path is built ---------------------------

@pytest.fixture
def real_registry(monkeypatch):
    elements, ports = REAL_REGISTRY
    try:
        elements(), ports()
    except ImportError as e:
        pytest.skip(f"fast path not built: {e}")
    monkeypatch.setattr(registry, "element_types", elements)
    monkeypatch.setattr(registry, "port_kinds", ports)


def test_real_registry_loads_quickstart(real_registry):
    open("in.pcap", "w").close()
    p = load(QUICKSTART)
    assert [(n, d.cls.SCHEME, d.rx, d.tx) for n, d in p.ports.items()] == [
        ("src", "gen", True, False), ("trace", "pcap", True, False),
        ("out", "pcap", False, True), ("sink", "sink", False, True),
    ]
    assert {n: d.cls.TYPE for n, d in p.elements.items()} == {
        "c1": "counter", "t": "tee", "tap": "pcap-tap", "drop": "drop"}
    assert p.ports["src"].params["size"] == (60, 1500)


def test_real_registry_errors(real_registry):
    assert errors("""\
        ports:
          src: gen:count=10,size=20
          trace: pcap:in.pcap
        elements: {t: tee}
        links: [src -> t -> sink, trace -> drop]
        """) == [
        ("p.yaml:2:21: port 'src' (gen): size: expected a frame length or a range like "
         "42-9216, within 42..9216, got '20'"),
        "p.yaml:3:10: port 'trace' (pcap): file: no such file: 'in.pcap'",
        ("p.yaml:4:12: output 'copy' of element 't' (tee) is not connected; "
         "wire it to 'drop' to discard"),
    ]
