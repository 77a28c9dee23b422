"""What ``replay`` publishes for each log line: every message of a valid line, keyed, as the
JSON it was written in; an invalid line as one raw record for the evaluator to dead-letter."""

from __future__ import annotations

import orjson

from simulator.traffic import TrafficConfig, World
from streams import topics
from streams.replay import messages_of

ROLES = {"teacher": topics.TEACHER, "student": topics.STUDENT, "teacher_replica": topics.TEACHER_REPLICA}


def test_each_message_is_the_lines_object_under_its_key() -> None:
    kinds = set()
    for line in World(TrafficConfig(pairs=300, label_share=0.3), seed=2).lines():
        got = messages_of(orjson.dumps(line))
        if "catalog" in line:
            kinds.add("catalog")
            assert [(t, k, orjson.loads(v)) for t, k, v in got] == [
                (topics.CATALOG, line["catalog"]["entity_id"].encode(), line["catalog"])]
        elif "label" in line:
            kinds.add("label")
            assert [(t, k, orjson.loads(v)) for t, k, v in got] == [
                (topics.LABELS, line["label"]["request_id"].encode(), line["label"])]
        else:
            key = line["request"]["request_id"].encode()
            want = [(topics.REQUESTS, key, line["request"])]
            want += [(topic, key, line[role]) for role, topic in ROLES.items() if line.get(role) is not None]
            kinds.add(len(want))
            assert [(t, k, orjson.loads(v)) for t, k, v in got] == want
    assert {"catalog", "label", 3} <= kinds


def _request_line(**extra: object) -> dict:
    line = next(ln for ln in World(TrafficConfig(pairs=3), seed=1).lines() if "request" in ln)
    return {**line, **extra}


def test_extra_fields_and_the_written_text_are_kept_and_absent_answers_left_out() -> None:
    line = _request_line(teacher_replica=None)  # null: left out, as is an answer not there
    del line["student"]
    line["request"] = {**line["request"], "x_trace": {"span": "ab\u00e9"}}
    raw = orjson.dumps(line).replace(b'"x_trace":', b'"x_trace" :  ')  # odd spacing survives
    got = messages_of(raw)
    assert [t for t, _, _ in got] == [topics.REQUESTS, topics.TEACHER]
    assert b'"x_trace" :  {"span":"ab\xc3\xa9"}' in got[0][2]
    assert orjson.loads(got[0][2]) == line["request"]


def test_an_invalid_line_is_one_raw_request_record() -> None:
    line = _request_line()
    line["student"] = {**line["student"], "role": "teacher"}  # the wrong role for its slot
    raw = orjson.dumps(line) + b"\r\n"
    assert messages_of(raw) == [(topics.REQUESTS, None, raw[:-2])]
    assert messages_of(b'{"request": ') == [(topics.REQUESTS, None, b'{"request": ')]
