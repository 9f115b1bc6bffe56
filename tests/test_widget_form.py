"""The panel's form, made from a compiled class's layout: which input each kind of field gets,
its limits, and the value read back (no kernel needed: ipywidgets objects work on their own)."""

from __future__ import annotations

import numpy as np
import pytest

from cbridge_magics import cstruct
from cbridge_magics.widgets import Form, reply_table

SOURCE = """
#include <stdint.h>
#include <stdbool.h>
enum mode { MODE_IDLE = 0, MODE_RUN = 5, MODE_HOLD = 9 };
typedef enum { LEVEL_LOW, LEVEL_HIGH } Level;
#define GAIN_X1 1
#define GAIN_X10 10
typedef struct { int16_t x; float scale; } Axis;
typedef struct {
    enum mode mode;
    Level level;
    uint8_t gain;
    int64_t offset;
    uint64_t serial;
    double rate;
    bool armed;
    char name[8];
    int16_t taps[2][2];
    float weights[3];
    Axis axis;
    Axis spare[2];
} Setup;
"""


@pytest.fixture(scope="module")
def Setup(cstruct_cache):
    return cstruct.compile(SOURCE)["Setup"]


def widgets(form: Form) -> dict[str, str]:
    out = {}
    for item, nested in form.fields:
        if nested:
            out.update({f"{item.title}.{k}": v for k, v in widgets(item).items()})
        else:
            out[item.name] = type(item.widget).__name__
    return out


def test_each_kind_of_field_gets_its_input(Setup):
    form = Form(Setup, choices={"gain": "GAIN_"})
    assert widgets(form) == {
        "mode": "Dropdown", "level": "Dropdown", "gain": "Dropdown", "offset": "Text",
        "serial": "Text", "rate": "FloatText", "armed": "Checkbox", "name": "Text",
        "taps": "Text", "weights": "Text", "axis.x": "BoundedIntText",
        "axis.scale": "FloatText", "spare": "HTML"}
    by = {item.name: item for item, nested in form.fields if not nested}
    assert by["mode"].widget.options == (("MODE_IDLE", 0), ("MODE_RUN", 5), ("MODE_HOLD", 9))
    assert by["level"].widget.options == (("LEVEL_LOW", 0), ("LEVEL_HIGH", 1))
    assert by["gain"].widget.options == (("GAIN_X1", 1), ("GAIN_X10", 10))
    axis = next(item for item, nested in form.fields if nested)
    x = axis.fields[0][0].widget
    assert (x.min, x.max) == (-32768, 32767)
    assert "Axis" in axis.box.children[0].value  # a labelled group


def test_the_value_round_trips_and_bad_values_name_their_field(Setup):
    form = Form(Setup, choices={"gain": "GAIN_"})
    obj = Setup(mode=9, level=1, gain=10, offset=-2**63, serial=2**64 - 1, rate=2.5, armed=True,
                name=b"probe", taps=[[1, -2], [3, 4]], weights=[0.5, 1.5, -2.0],
                axis={"x": -7, "scale": 0.25}, spare=[{"x": 1, "scale": 2.0}, {"x": 3, "scale": 4.0}])
    form.value = obj
    assert bytes(form.value) == bytes(obj)

    by = {item.name: item for item, nested in form.fields if not nested}
    by["taps"].widget.value = "1, 2, 3"
    with pytest.raises(ValueError, match=r"Setup\.taps: needs 4 values, got 3"):
        form.value
    by["taps"].widget.value = "1, 2, 3, 70000"
    with pytest.raises(ValueError, match=r"taps\[3\]: 70000 is out of range"):
        form.value
    by["taps"].widget.value = ""  # empty: all zero
    assert form.value.taps.tolist() == [[0, 0], [0, 0]]
    by["offset"].widget.value = str(-2**63 - 1)
    with pytest.raises(ValueError, match="out of range for int64_t"):
        form.value
    by["offset"].widget.value = "0x10"
    by["name"].widget.value = "ninechars"
    with pytest.raises(ValueError, match="holds at most 8 bytes, got 9"):
        form.value
    by["name"].widget.value = "ok"
    assert form.value.offset == 16 and form.value.name == b"ok"
    # a value with no constant's name is shown as itself, not lost
    form.value = Setup(mode=3, gain=7)
    assert form.value.mode == 3 and form.value.gain == 7
    with pytest.raises(TypeError, match="for Setup"):
        form.value = form.value.axis


def test_choices_that_name_nothing_are_refused(Setup):
    with pytest.raises(ValueError, match="no integer constants named 'NOPE_'"):
        Form(Setup, choices={"gain": "NOPE_"})


def test_a_reply_table_shows_records_and_counts_the_rest(Setup):
    one = Setup(mode=5, name=b"a<b", weights=[1, 2, 3])
    html = reply_table(one)
    assert "<th>mode</th>" in html and "<td>MODE_RUN (5)</td>" in html and "a&lt;b" in html
    many = reply_table([one] * 11)
    assert many.count("<tr>") == 1 + 8 and "and 3 more records" in many
    assert "[1., 2., 3.]" in html


def test_a_form_for_a_type_built_from_the_drivers_schema(driver):
    """No %%cstruct: the class the driver's HELLO describes gets a form too, with dropdowns of
    the enum constants the HELLO lists; choices may be given as a dict of names."""
    from cbridge_magics import connect

    with connect(driver.url) as b:
        Command = b.types["Command"]
        form = Form(Command, choices={"op": {"GET_STATUS": 0, "START": 1}})
        assert widgets(form) == {"op": "Dropdown", "waveform": "Dropdown",
                                 "frequency_hz": "FloatText", "amplitude": "FloatText",
                                 "rate_hz": "BoundedIntText", "batch": "BoundedIntText"}
        assert [o for o, _ in form.fields[1][0].widget.options] == [
            "DEMO_WAVE_SINE", "DEMO_WAVE_SQUARE", "DEMO_WAVE_SAW", "DEMO_WAVE_NOISE"]
        status = Form(b.types["Status"])  # its flags word: bit-fields, from the HELLO alone
        assert widgets(status) == {
            "code": "BoundedIntText", "streaming": "Checkbox", "paced": "Checkbox",
            "waveform": "Dropdown", "clients": "BoundedIntText", "level_db": "BoundedIntText",
            "frames_sent": "Text", "records_sent": "Text", "frequency_hz": "FloatText"}
        assert (status.fields[5][0].widget.min, status.fields[5][0].widget.max) == (-128, 127)
        status.value = b.types["Status"](streaming=1, waveform=2, level_db=-7)
        assert (status.value.streaming, status.value.waveform, status.value.level_db) == (1, 2, -7)
        assert "<td>DEMO_WAVE_SAW (2)</td>" in reply_table(status.value)
        form.value = Command(op=1, frequency_hz=2.5, batch=3)
        reply = b.request(form.value, timeout=2.0)
        assert reply.streaming == 1 and reply.frequency_hz == 2.5  # what the form said
        b.request(Command(op=2), timeout=2.0)
