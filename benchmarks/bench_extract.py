"""Extract benchmark: a generated 1,000,000-row CRM export (pt-BR, `;`, decimal commas) through `extract_sources`.

Prints rows/s and peak memory (max RSS of a fresh process per case) for: polars reading the file on its
own (the baseline), extract on the UTF-8 export, on the same export in Windows-1252 (transcoded to UTF-8
in 8 MiB blocks first) and on the same rows as JSON Lines. The files are written to /tmp, never to the
repository.

    python benchmarks/bench_extract.py [--rows 1000000] [--dir /tmp/afinar-bench]

Run it with --rows 3000000 too: extract's peak memory stays the same whatever the file's size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
MESSAGES = [
    "Olá, gostaria de saber o preço da Barista Pro e se vocês parcelam em 10 vezes sem juros no cartão.",
    "Bom dia! A Compacta Express usa café moído ou cápsula? Preciso de algo fácil de limpar.",
    "Oi, Ana! Seguem os dados para a nota: CPF 123.456.789-09, entrega na Rua das Flores, 120, Campinas.",
    "A garantia é de 2 anos contra defeitos de fabricação; no plano Cuidado Total ela vai para 3 anos.",
    "Para Recife o prazo é de 7 a 10 dias úteis e o frete fica em R$ 89,00; acima de R$ 3.000 é grátis.",
    "Minha máquina parou de puxar água, faz barulho de bomba mas não sai nada. Podem ajudar?",
    "Recomendo o Moedor Cônico M2: 40 níveis de moagem, timer digital e não esquenta o grão.",
    "Vou pensar e retorno semana que vem, obrigado pela atenção!\nAbraço,\nJoão",
]
NOTES = [
    "Cliente pediu retorno após o dia 10, quando cai o salário; prefere contato por WhatsApp no fim da tarde.",
    "Lead veio da campanha de Black Friday; já tem uma Compacta e quer trocar pela Barista Pro no Troca Certa.",
    "Empresa com 40 funcionários, pediu proposta com nota para CNPJ e instalação na Grande São Paulo.",
    "",
    "Reclamou do prazo de entrega para o Nordeste; ofereci frete grátis acima de R$ 3.000,00.",
]
AUTHORS = ["Ana (Vendas)", "Marcos Oliveira", "Juliana Prado", "Roberto Tanaka", "+55 11 98765-4321"]


def brl(cents: int) -> str:
    """12345678 → "123.456,78", as pt-BR spreadsheets write money."""
    return f"{cents // 100:,}".replace(",", ".") + f",{cents % 100:02d}"


def generate(path: Path, rows: int, encoding: str) -> None:
    """Write the CRM export: `;`-separated, dd/mm/yyyy timestamps, decimal commas, a multi-line field."""
    rng = np.random.default_rng(0)
    start = np.datetime64("2024-01-01T08:00")
    minutes = np.cumsum(rng.integers(1, 30, rows)).astype("timedelta64[m]")
    frame = pl.DataFrame({
        "ID Negócio": [f"NEG-{i // 6:07d}" for i in range(rows)],
        "Data/Hora": pl.Series((start + minutes).astype("datetime64[ms]")).dt.strftime("%d/%m/%Y %H:%M"),
        "Autor": np.array(AUTHORS)[rng.integers(0, len(AUTHORS), rows)],
        "Canal": np.array(["e-mail", "telefone", "whatsapp", "chat do site"])[rng.integers(0, 4, rows)],
        "Mensagem": np.array(MESSAGES)[rng.integers(0, len(MESSAGES), rows)],
        "Valor Proposta (R$)": [brl(v) for v in rng.integers(1000, 900000, rows)],
        "Etapa": np.array(["Qualificação", "Proposta", "Negociação", "Fechamento"])[rng.integers(0, 4, rows)],
        "Resultado": np.array(["ganho", "perdido"])[rng.integers(0, 2, rows)],
        "Produto": np.array(["Barista Pro", "Compacta Express", "Moedor Cônico M2", "Blend Cerrado 1 kg"])[
            rng.integers(0, 4, rows)
        ],
        "E-mail": [f"cliente{i % 50_000}@exemplo.com.br" for i in range(rows)],
        "Observações": np.array(NOTES)[rng.integers(0, len(NOTES), rows)],
        "Origem do lead": np.array(["Instagram", "Google", "Indicação", "Loja física", ""])[rng.integers(0, 5, rows)],
    })  # fmt: skip
    if encoding == "jsonl":  # the same rows as JSON Lines, one object per line
        frame.write_ndjson(path)
        return
    utf8 = path.with_suffix(".utf8.tmp")
    frame.write_csv(utf8, separator=";", line_terminator="\r\n")
    if encoding == "utf-8":
        utf8.rename(path)
        return
    with utf8.open("r", encoding="utf-8", newline="") as src, path.open("wb") as out:
        while block := src.read(1 << 22):
            out.write(block.encode(encoding))
    utf8.unlink()


class MemorySampler(threading.Thread):
    """Samples /proc/self/status every 10 ms: peak RSS, and peak anonymous RSS (RSS minus mapped file pages,
    which polars' memory-mapped reads count in RSS although the kernel can drop them at any time)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_rss = self.peak_anon = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.01):
            fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
            self.peak_rss = max(self.peak_rss, int(fields["VmRSS"].split()[0]))
            self.peak_anon = max(self.peak_anon, int(fields["RssAnon"].split()[0]))


def run_case(case: str, path: Path, work: Path) -> dict[str, float]:
    """Time one case in this process; returns rows, seconds and peak memory in MB (see MemorySampler)."""
    from tasks.config.data import CrmColumns, ExtractConfig
    from tasks.extract import extract_sources

    sampler = MemorySampler()
    sampler.start()
    start = time.perf_counter()
    if case == "idle":  # the interpreter with polars, pyarrow and afinar's extract imported, doing nothing
        time.sleep(0.1)
        rows = 0
    elif case == "polars":
        rows = pl.read_csv(path, separator=";", infer_schema=False).height
    else:
        cfg = ExtractConfig(crm=CrmColumns(text="Mensagem", author="Autor", timestamp="Data/Hora",
                                           conversation="ID Negócio", outcome="Resultado"))  # fmt: skip
        report = extract_sources([path], cfg, work)
        rows = report.rows_in
    seconds = time.perf_counter() - start
    sampler.done.set()
    sampler.join()
    hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
    peak_rss = max(sampler.peak_rss, int(hwm.split()[1]))
    return {"rows": rows, "seconds": seconds, "peak_mb": peak_rss / 1024, "peak_anon_mb": sampler.peak_anon / 1024}


def measure(case: str, path: Path, work: Path, repeats: int) -> dict[str, float]:
    """Run a case `repeats` times, each in a fresh interpreter (so its peak memory is its own); keep the fastest."""
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, __file__, "--case", case, "--file", str(path), "--work", str(work)],
            check=True, capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return min(runs, key=lambda r: r["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/afinar-bench"))
    parser.add_argument("--repeats", type=int, default=2, help="runs per case; the fastest is shown (shared CPUs)")
    parser.add_argument("--case")
    parser.add_argument("--file", type=Path)
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.file, args.work)))
        return
    args.dir.mkdir(parents=True, exist_ok=True)
    files = {
        "utf-8": args.dir / f"crm_{args.rows}_utf8.csv",
        "cp1252": args.dir / f"crm_{args.rows}_cp1252.csv",
        "jsonl": args.dir / f"crm_{args.rows}.jsonl",
    }
    for encoding, path in files.items():
        if not path.exists():
            started = time.perf_counter()
            generate(path, args.rows, encoding)
            print(f"generated {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.1f} s")
    cases = [
        ("polars read_csv (baseline)", "polars", files["utf-8"]),
        ("extract, UTF-8 export", "extract", files["utf-8"]),
        ("extract, Windows-1252 export", "extract", files["cp1252"]),
        ("extract, JSON Lines export", "extract", files["jsonl"]),
    ]
    idle = measure("idle", files["utf-8"], args.dir / "out-idle", 1)
    print(
        f"(a process that only imports extract: peak RSS {idle['peak_mb']:.0f} MB, "
        f"anon {idle['peak_anon_mb']:.0f} MB; extract's own memory is the peak less that)"
    )
    print(f"\n{'case':30} {'rows':>9} {'s':>6} {'rows/s':>10} {'vs polars':>9} {'file MB':>7} {'peak RSS MB':>11} "
          f"{'peak anon MB':>12}")  # fmt: skip
    baseline = None
    for label, case, path in cases:
        result = measure(case, path, args.dir / f"out-{case}-{path.stem}", args.repeats)
        rate = result["rows"] / result["seconds"]
        baseline = baseline or rate
        print(
            f"{label:30} {int(result['rows']):>9,} {result['seconds']:>6.2f} {rate:>10,.0f} {rate / baseline:>8.2f}x "
            f"{path.stat().st_size / 1e6:>7.0f} {result['peak_mb']:>11.0f} {result['peak_anon_mb']:>12.0f}"
        )


if __name__ == "__main__":
    main()
