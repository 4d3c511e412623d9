"""benchmarks.attribution: each sampled stack goes to its innermost stage, and the section survives a load rerun."""

from __future__ import annotations

import inspect

from benchmarks.attribution import BEGIN, END, _with_section, keep_section, split, stage_of
from service import intake

LOOP = "thread (1): MainThread;run (uvicorn/server.py:68);Runner.run (asyncio/runners.py:118)"
WORKER = "thread (2): ilcs-model_0;Thread._bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:83)"
PROCESS = "BatchProcessor.__call__ (service/pipeline.py:130);BatchProcessor._process (service/pipeline.py:150)"


def strict_line() -> int:
    lines, first = inspect.getsourcelines(intake.decode)
    return first + next(i for i, text in enumerate(lines) if "simplejpeg.decode_jpeg" in text)


def test_a_stack_goes_to_the_work_stage_it_passes_through_else_to_its_innermost_layer():
    png = ["render_heatmap (service/heatmap.py:75)", "encode_png (service/heatmap.py:44)"]
    assert stage_of([*PROCESS.split(";"), *png]) == "heatmap PNG and base64"
    model = ["Engine._predict (service/inference.py:199)", "TorchRunner.__call__ (service/backends.py:80)"]
    assert stage_of([*PROCESS.split(";"), *model]).startswith("model forward")
    route = ["ServiceMiddleware.__call__ (service/middleware.py:60)", "classify (service/routes/classify.py:95)"]
    assert stage_of([*LOOP.split(";")[1:], *route]).startswith("request handling")
    assert stage_of([*LOOP.split(";")[1:], *route, "Request.body (starlette/requests.py:240)"]).startswith("HTTP")
    assert stage_of(["decode (service/intake.py:9999)", "to_gray (model_zoo/preprocess.py:40)"]).startswith("decod")
    assert stage_of([f"decode (service/intake.py:{strict_line()})"]).startswith("JPEG strict check")
    assert stage_of(["Preprocess.__call__ (model_zoo/preprocess.py:80)"]).startswith("preprocessing")
    assert stage_of(["h11_impl.handle_events (uvicorn/protocols/http/h11_impl.py:200)"]).startswith("HTTP")
    assert stage_of(["<module> (x.py:1)"]).startswith("other")


def test_samples_are_split_between_the_event_loop_and_the_model_workers():
    raw = "\n".join(
        [
            f"{LOOP};serialize_response (fastapi/routing.py:150) 3",
            f"{WORKER};{PROCESS};Engine._predict (service/inference.py:199) 7",
            "garbage",
        ]
    )
    loop, workers = split(raw)
    assert loop == {"answer: result, validation, JSON": 3}
    assert workers == {"model forward (stack, backend, softmax)": 7}


def test_the_section_is_replaced_in_place_and_kept_when_the_load_report_is_rewritten():
    report = _with_section("# report\n\nbody\n", "## split\nold")
    again = _with_section(report, "## split\nnew")
    assert again.count(BEGIN) == 1 and "new" in again and "old" not in again
    rewritten = keep_section("# report\n\nnew body\n", again)
    assert rewritten.startswith("# report\n\nnew body") and rewritten.count(END) == 1 and "## split\nnew" in rewritten
    assert keep_section("# fresh\n", "# no section\n") == "# fresh\n"
