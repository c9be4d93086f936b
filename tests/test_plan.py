"""The planner: advice on a table of cases, method by hardware, licence filtering, formulas, and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from flows.cli import main as cli_main
from tasks.chat_format import count_tokens
from tasks.config import compose
from tasks.config.data import DataConfig
from tasks.config.plan import PlanConfig
from tasks.plan import build_plan, load_catalog, plan_for_run
from tasks.plan.data_stats import DataStats, stats_from_examples, stats_from_records
from tasks.plan.estimates import Setup, embedding_params, linear_params, peak_memory
from tasks.plan.hardware import Hardware
from tasks.records import EXAMPLE_SCHEMA, RECORD_SCHEMAS, example_id

PT_TURNS = [
    ("Oi, vocês entregam em Campinas? Preciso do sofá até sexta.",
     "Olá! Entregamos sim em Campinas, o prazo é de 3 dias úteis. Quer que eu reserve o sofá para você?"),
    ("Qual é o valor do frete para o modelo de três lugares?",
     "Para o modelo de três lugares o frete fica em R$ 89,00, e é grátis nas compras acima de R$ 1.500."),
    ("Posso pagar no boleto ou só no cartão?",
     "Você pode pagar no boleto à vista com 5% de desconto ou no cartão em até 10 vezes sem juros."),
    ("O tecido é impermeável? Tenho dois cachorros em casa.",
     "É sim! O tecido tem tratamento impermeável e é fácil de limpar, ótimo para quem tem pets."),
]  # fmt: skip
EN_TURNS = [
    ("Do you ship to Denver? I need the desk by Friday.",
     "Hi! Yes, we ship to Denver in three business days. Shall I reserve the desk for you?"),
    ("What does shipping cost for the large model?",
     "Shipping for the large model is $29, and it is free on orders over $500."),
    ("Can I pay by bank transfer or only by card?",
     "You can pay by bank transfer with a 5% discount, or by card in up to ten instalments."),
]  # fmt: skip

CPU = Hardware(gpus=0, gpu_memory_gb=0.0, gpu_name=None, cpu_cores=2, ram_gb=24.0, detected=False)
GPU_24 = Hardware(gpus=1, gpu_memory_gb=24.0, gpu_name="NVIDIA GeForce RTX 4090", cpu_cores=16, ram_gb=64.0,
                  detected=False)  # fmt: skip
GPU_80 = replace(GPU_24, gpu_memory_gb=80.0, gpu_name="NVIDIA H100 80GB HBM3")


def write_examples(path: Path, tokenizer, turns: list[tuple[str, str]], n: int, distinct: bool = True) -> Path:
    """A run-shaped examples.parquet: n rows cycling through `turns` (made distinct by an order number)."""
    rows = []
    for i in range(n):
        question, answer = turns[i % len(turns)]
        output = f"{answer} (pedido {i})" if distinct else answer
        row = {
            "system": None,
            "instruction": "Reply to the customer as our sales assistant would.",
            "input": question,
            "output": output,
        }
        rows.append(
            {
                **row,
                "id": example_id(None, row["instruction"], question, output),
                "source": "whatsapp",
                "origin": f"chat.txt#line={i}",
                "split": ("train", "train", "train", "val", "test")[i % 5],
                "synthetic": False,
                "parent_id": None,
                "score": None,
                "n_tokens": count_tokens(tokenizer, row),
            }
        )
    pl.DataFrame(rows, schema=EXAMPLE_SCHEMA).write_parquet(path)
    return path


@pytest.fixture(scope="module")
def pt_stats(tokenizer, tmp_path_factory) -> DataStats:
    path = write_examples(tmp_path_factory.mktemp("pt") / "examples.parquet", tokenizer, PT_TURNS, 400)
    return stats_from_examples(path, tokenizer)


@pytest.fixture(scope="module")
def en_stats(tokenizer, tmp_path_factory) -> DataStats:
    path = write_examples(tmp_path_factory.mktemp("en") / "examples.parquet", tokenizer, EN_TURNS, 400)
    return stats_from_examples(path, tokenizer)


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_examples_statistics_come_from_the_run_file(pt_stats):
    assert pt_stats.n_examples == 400
    assert pt_stats.n_train == 240  # 3 of every 5 rows
    assert pt_stats.language == "pt"
    assert 20 < pt_stats.tokens_mean < 120
    assert 0 < pt_stats.target_share < 1
    assert pt_stats.duplicate_share == 0


def test_whatsapp_records_give_one_example_per_assistant_reply(tokenizer, tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    chat = [
        ("Ana", "Oi, o sofá azul ainda está disponível?"),
        ("Loja", "Olá Ana! Está sim."),
        ("Loja", "Quer que eu reserve?"),  # merged with the line above: one reply
        ("Ana", "Quero, por favor. Entregam em Campinas?"),
        ("Loja", "Entregamos sim, em 3 dias úteis."),
        ("Ana", "<Mídia oculta>"),
    ]
    rows = [
        {"source": "whatsapp", "origin": f"chat.txt#line={i + 1}", "file": "chat.txt", "line": i + 1,
         "conversation_id": "chat.txt", "timestamp": None, "sender": who, "text": text,
         "kind": "media" if text.startswith("<") else "text"}
        for i, (who, text) in enumerate(chat)
    ]  # fmt: skip
    pl.DataFrame(rows, schema=RECORD_SCHEMAS["whatsapp"]).write_parquet(records / "whatsapp.parquet")
    stats = stats_from_records(records, DataConfig(), tokenizer)
    assert stats.n_examples == 2  # "Loja" is the most active sender: its two replies are the outputs
    assert stats.kinds == {"whatsapp": 6} and stats.language == "pt"


def test_tiny_document_set_gets_retrieval_advice_with_its_threshold(tokenizer, tmp_path, catalog):
    records = tmp_path / "records"
    records.mkdir()
    pages = ["A garantia cobre defeitos de fabricação por 12 meses a partir da entrega. " * 12,
             "Trocas são aceitas em até 7 dias, com o produto na embalagem original. " * 12]  # fmt: skip
    pl.DataFrame(
        [
            {"source": "pdf", "origin": f"manual.pdf#page={i + 1}", "file": "manual.pdf", "page": i + 1, "text": t}
            for i, t in enumerate(pages)
        ],
        schema=RECORD_SCHEMAS["pdf"],
    ).write_parquet(records / "pdf.parquet")
    stats = stats_from_records(records, DataConfig(), tokenizer)
    plan = build_plan("answer questions about our warranty", stats, CPU, catalog, PlanConfig())
    assert plan["advice"] == "retrieval"
    assert "plan.min_train_examples=100" in plan["reasons"][0]
    assert stats.document_token_share == 1.0


def test_tiny_conversation_set_gets_prompting_advice(tokenizer, tmp_path, catalog):
    stats = stats_from_examples(write_examples(tmp_path / "e.parquet", tokenizer, PT_TURNS, 20), tokenizer)
    plan = build_plan("", stats, CPU, catalog, PlanConfig())
    assert plan["advice"] == "prompting"
    assert "12 training examples < plan.min_train_examples=100" in plan["reasons"][0]


def test_repetitive_data_is_too_poor_to_finetune(tokenizer, tmp_path, catalog):
    path = write_examples(tmp_path / "e.parquet", tokenizer, PT_TURNS, 400, distinct=False)
    plan = build_plan("", stats_from_examples(path, tokenizer), CPU, catalog, PlanConfig())
    assert plan["advice"] == "prompting"
    assert "plan.max_poor_share" in plan["reasons"][0]


@pytest.mark.parametrize(
    ("hardware", "model", "method"),
    [
        (GPU_24, "qwen2_5_7b", "qlora"),
        (GPU_24, "mistral_7b", "qlora"),
        (GPU_80, "qwen2_5_7b", "lora"),  # the same model with room for 16-bit weights
        (GPU_24, "qwen2_5_1_5b", "lora"),
    ],
)
def test_method_follows_the_weights_share_of_gpu_memory(pt_stats, catalog, hardware, model, method):
    plan = build_plan("", pt_stats, hardware, catalog, PlanConfig(model=model))
    assert plan["model"]["name"] == model
    assert plan["method"]["name"] == method
    assert plan["estimates"]["peak_memory_gb"] <= hardware.gpu_memory_gb * 0.9
    assert f"model={model}" in plan["overrides"] and f"train={method}" in plan["overrides"]
    composed = compose(plan["overrides"])  # the printed command really runs this plan
    assert composed.train.method == method and composed.train.lora.r == plan["hyperparameters"]["lora_r"]


def test_gpu_without_bf16_is_planned_in_fp32_as_the_train_stage_runs_it(pt_stats, catalog):
    t4 = replace(GPU_24, gpu_memory_gb=16.0, gpu_name="Tesla T4")
    plan = build_plan("", pt_stats, t4, catalog, PlanConfig(model="qwen2_5_1_5b"))
    assert plan["method"]["precision"] == "fp32" and "train.precision=fp32" in plan["overrides"]
    bf16 = build_plan("", pt_stats, replace(t4, gpu_name="NVIDIA L4"), catalog, PlanConfig(model="qwen2_5_1_5b"))
    weights = [p["estimates"]["peak_memory"]["parts"]["weights"] for p in (bf16, plan)]
    assert weights[0] == pytest.approx(weights[1] / 2)


def test_unpinned_24gb_gpu_gets_a_7b_class_model_in_qlora(pt_stats, catalog):
    plan = build_plan("sales assistant for WhatsApp", pt_stats, GPU_24, catalog, PlanConfig())
    assert 7 <= plan["model"]["params_b"] <= 9
    assert "pt" in plan["model"]["languages"]
    assert plan["method"]["name"] == "qlora"


def test_cpu_only_gets_the_embedded_model(en_stats, catalog):
    plan = build_plan("customer support replies", en_stats, CPU, catalog, PlanConfig())
    assert plan["advice"] == "finetune"
    assert plan["model"]["name"] == "smollm2_135m"
    assert plan["method"] == {**plan["method"], "name": "lora", "precision": "fp32"}
    assert "train.precision=fp32" in plan["overrides"]
    assert plan["estimates"]["train_hours"] < PlanConfig().cpu_max_train_hours


def test_non_commercial_licence_is_filtered_out_when_commercial_use_is_required(pt_stats, catalog):
    pair = [m for m in catalog if m.name in ("qwen2_5_3b", "qwen2_5_1_5b")]
    free = build_plan("", pt_stats, GPU_24, pair, PlanConfig())
    assert free["model"]["name"] == "qwen2_5_3b"  # the larger one wins when the licence does not matter
    business = build_plan("", pt_stats, GPU_24, pair, PlanConfig(commercial_use=True))
    assert business["model"]["name"] == "qwen2_5_1_5b"
    assert "commercial" in business["rejected_models"]["qwen2_5_3b"][0]
    with pytest.raises(ValueError, match="qwen-research"):
        build_plan("", pt_stats, GPU_24, pair, PlanConfig(commercial_use=True, model="qwen2_5_3b"))


def test_catalog_architecture_reproduces_each_parameter_count(catalog):
    assert len(catalog) >= 15 and catalog[0].name == "smollm2_135m"
    for m in catalog:
        from_arch = (linear_params(m) + embedding_params(m)) / 1e9
        assert from_arch == pytest.approx(m.params_b, rel=0.02), m.name
        compose([f"model={m.name}"])  # every entry is a valid Hydra choice
    licences = {m.name: m.commercial_use for m in catalog}
    assert licences["qwen2_5_3b"] is False and licences["qwen2_5_7b"] is True
    assert all("pt" in m.languages for m in catalog if m.name.startswith(("qwen", "llama")))


def test_qlora_of_a_70b_model_fits_one_48gb_gpu_as_in_the_qlora_paper(catalog):
    llama70 = next(m for m in catalog if m.name == "llama3_1_70b")
    setup = Setup("qlora", "bf16", 1, 512, 0.5, gradient_checkpointing=True)
    peak = peak_memory(llama70, setup, PlanConfig(), gpu=True)
    assert 36 < peak.value < 48
    full = peak_memory(llama70, replace(setup, method="full"), PlanConfig(), gpu=True)
    assert full.parts["weights"] + full.parts["trainable_state"] == pytest.approx(70.55 * 16, rel=0.01)


def test_gradient_checkpointing_lowers_the_activation_estimate(catalog):
    qwen = next(m for m in catalog if m.name == "qwen2_5_7b")
    setup = Setup("lora", "bf16", 4, 1024, 0.5)
    plain = peak_memory(qwen, setup, PlanConfig(), gpu=True).parts["activations"]
    checkpointed = peak_memory(qwen, replace(setup, gradient_checkpointing=True), PlanConfig(), gpu=True)
    assert checkpointed.parts["activations"] < plain / 5


def test_plan_json_has_the_documented_shape(tokenizer, tmp_path, capsys, model_cache):
    path = write_examples(tmp_path / "examples.parquet", tokenizer, EN_TURNS, 300)
    code = cli_main(["plan", "--data", str(path), "--cpu", "--json", f"paths.cache={model_cache}"])
    assert code == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["advice"] in ("finetune", "retrieval", "prompting") and plan["reasons"]
    for key in ("model", "method", "hyperparameters", "overrides"):
        assert plan[key], key
    for key in ("peak_memory_gb", "train_hours", "train_cost", "serving_cost_month", "api_cost_month"):
        assert isinstance(plan["estimates"][key], float | int) and plan["estimates"][key] >= 0, key
    assert plan["hardware"]["kind"] == "cpu"
    assert compose(plan["overrides"]).model.name == plan["model"]["name"]  # the overrides really compose


def test_plan_report_shows_the_decision_and_the_command(tokenizer, tmp_path, capsys, model_cache):
    path = write_examples(tmp_path / "examples.parquet", tokenizer, EN_TURNS, 300)
    args = ["plan", "--data", str(path), "--gpus", "1", "--gpu-memory", "24", "--commercial-use",
            "--objective", "support chat", f"paths.cache={model_cache}", "plan.gpu_hour_usd=1.5"]  # fmt: skip
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "advice: finetune" in out and "afinar run model=" in out and "$1.5/GPU-hour" in out


def test_missing_data_path_exits_2_naming_it(tmp_path, capsys, model_cache):
    code = cli_main(["plan", "--data", str(tmp_path / "nope.csv"), "--cpu", f"paths.cache={model_cache}"])
    assert code == 2
    assert "nope.csv" in capsys.readouterr().err


def test_plan_for_run_adds_estimates_for_the_runs_own_settings(tokenizer, tmp_path, work_overrides):
    path = write_examples(tmp_path / "examples.parquet", tokenizer, PT_TURNS, 300)
    cfg = compose([*work_overrides, "plan.cpu=true", "train.per_device_batch_size=2"])
    plan = plan_for_run(cfg, path)
    assert plan["run"]["model"] == "smollm2_135m"
    bigger = plan_for_run(compose([*work_overrides, "plan.cpu=true", "train.per_device_batch_size=8"]), path)
    assert bigger["run"]["peak_memory_gb"] > plan["run"]["peak_memory_gb"]


@pytest.mark.slow
def test_plan_task_logs_plan_json_and_plan_metrics_to_the_run(tokenizer, tmp_path, work_overrides):
    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    from flows.finetune import Run, plan_task
    from tasks import tracking

    transformed = tmp_path / "transform"
    transformed.mkdir()
    write_examples(transformed / "examples.parquet", tokenizer, PT_TURNS, 300)
    cfg = compose([*work_overrides, "plan.cpu=true"])
    mlc = tracking.client(cfg)
    run_id = mlc.create_run(tracking.setup(cfg)).info.run_id

    @flow
    def plan_only() -> dict:
        return plan_task(Run(cfg, run_id), transformed)

    with prefect_test_harness(server_startup_timeout=120):
        returned = plan_only()
    logged = json.loads(Path(mlc.download_artifacts(run_id, "plan.json", str(tmp_path))).read_text())
    assert logged["model"] == returned["model"] and logged["advice"] == "finetune"
    metrics = mlc.get_run(run_id).data.metrics
    assert metrics["plan/peak_memory_gb"] == pytest.approx(returned["estimates"]["peak_memory_gb"])
    assert metrics["plan/run_peak_memory_gb"] > 0
