"""Write the extract test fixtures (tests/data/extract/) and the demo manual (samples/manual_produto.pdf).

Run once with `python tests/data/extract/make_fixtures.py`; the outputs are committed. Files are written
as the exporting tools write them (encodings, BOMs, CRLF, invisible marks), which is why they are made
by a script rather than typed. PDF text uses Helvetica in WinAnsiEncoding, so pypdf reads accents back.
"""

from __future__ import annotations

import json
import textwrap
import zipfile
from datetime import datetime
from pathlib import Path

from pypdf import PageObject, PdfWriter
from pypdf.generic import ArrayObject, DecodedStreamObject, DictionaryObject, NameObject, NumberObject

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parents[2] / "samples"


def pdf_string(text: str) -> str:
    """A PDF literal string in WinAnsiEncoding, non-ASCII bytes as octal escapes."""
    out = []
    for byte in text.encode("cp1252"):
        char = chr(byte)
        if char in "()\\":
            out.append("\\" + char)
        elif byte > 126:
            out.append(f"\\{byte:03o}")
        else:
            out.append(char)
    return "(" + "".join(out) + ")"


def text_page(writer: PdfWriter, paragraphs: list[str], title: str | None = None) -> None:
    """Add an A4 page with a bold title and wrapped paragraphs."""
    page = PageObject.create_blank_page(width=595, height=842)
    fonts = DictionaryObject()
    for key, base in (("/F1", "/Helvetica"), ("/F2", "/Helvetica-Bold")):
        font = DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject(base),
                NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
            }
        )
        fonts[NameObject(key)] = writer._add_object(font)
    page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
    ops = ["BT", "1 0 0 1 60 780 Tm", "15 TL"]
    if title:
        ops += ["/F2 15 Tf", f"{pdf_string(title)} Tj", "T*", "T*"]
    ops.append("/F1 10.5 Tf")
    for paragraph in paragraphs:
        for line in textwrap.wrap(paragraph, 92):
            ops += [f"{pdf_string(line)} Tj", "T*"]
        ops.append("T*")
    ops.append("ET")
    stream = DecodedStreamObject()
    stream.set_data("\n".join(ops).encode("latin-1"))
    page[NameObject("/Contents")] = writer._add_object(stream)
    writer.add_page(page)


def image_page(writer: PdfWriter) -> None:
    """Add a page that only draws an image (a scanned page: no text layer)."""
    page = PageObject.create_blank_page(width=595, height=842)
    image = DecodedStreamObject()
    image.set_data(bytes((x * 7 + y * 3) % 256 for y in range(32) for x in range(32)))
    image.update(
        {
            NameObject("/Type"): NameObject("/XObject"),
            NameObject("/Subtype"): NameObject("/Image"),
            NameObject("/Width"): NumberObject(32),
            NameObject("/Height"): NumberObject(32),
            NameObject("/ColorSpace"): NameObject("/DeviceGray"),
            NameObject("/BitsPerComponent"): NumberObject(8),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {
            NameObject("/XObject"): DictionaryObject({NameObject("/Im1"): writer._add_object(image)}),
            NameObject("/ProcSet"): ArrayObject([NameObject("/PDF"), NameObject("/ImageB")]),
        }
    )
    content = DecodedStreamObject()
    content.set_data(b"q 475 0 0 700 60 70 cm /Im1 Do Q")
    page[NameObject("/Contents")] = writer._add_object(content)
    writer.add_page(page)


MANUAL = [
    (
        "Barista Pro — Manual do Produto",
        [
            "Obrigado por escolher a Barista Pro, a máquina de espresso de caldeira dupla da Afinar Cafés. "
            "Este manual explica a instalação, o preparo de bebidas, a limpeza e a solução de problemas. "
            "Leia-o inteiro antes do primeiro uso e guarde-o junto com a nota fiscal.",
            "Especificações: bomba vibratória de 20 bar; caldeira de café de 0,45 L e caldeira de vapor de 1,8 L; "
            "reservatório removível de 2,5 L; porta-filtro de 58 mm com bico duplo; controle de temperatura PID "
            "de 88 °C a 96 °C; pré-infusão ajustável de 0 a 10 segundos; manômetro no painel; potência de 1.900 W; "
            "versões 127 V e 220 V (não use adaptador de voltagem); peso de 14 kg.",
            "Acompanham a máquina: porta-filtro, filtros de uma e duas doses, jarra de inox de 350 ml, tamper de "
            "alumínio de 58 mm, colher dosadora, pastilha de limpeza e este manual.",
            "Segurança: ligue a máquina apenas em tomada aterrada de 20 A. Nunca abra o vapor voltado para o corpo. "
            "Não mergulhe a máquina em água. Crianças só devem usá-la com supervisão de um adulto.",
        ],
    ),
    (
        "1. Primeiro uso",
        [
            "Retire todos os lacres e lave o reservatório, o porta-filtro e a jarra com água e detergente neutro. "
            "Encha o reservatório com água filtrada até a marca MAX e encaixe-o até ouvir um clique: se o "
            "reservatório estiver torto, a válvula do fundo não abre e a bomba trabalha sem puxar água.",
            "Ligue a máquina no botão lateral. Na primeira vez, as caldeiras enchem automaticamente; espere o "
            "ruído da bomba parar. O aquecimento completo leva cerca de 90 segundos e a luz do painel fica fixa "
            "quando a temperatura está estável.",
            "Antes do primeiro café, descarte três extrações só com água, com o porta-filtro encaixado, e abra o "
            "vapor por 20 segundos. Isso remove resíduos da fabricação e o ar do circuito.",
        ],
    ),
    (
        "2. Preparo de espresso",
        [
            "Use café moído na hora, em moagem fina para espresso. Café moído para coador é grosso demais: a água "
            "passa rápido e a bebida fica aguada. Recomendamos o Moedor Cônico M2 nos níveis 1 a 10.",
            "Dose: 9 g para uma xícara ou 18 g para duas. Distribua o pó de maneira uniforme e pressione com o "
            "tamper com firmeza, mantendo-o nivelado. Limpe a borda do porta-filtro antes de encaixar.",
            "Receita de referência: 18 g de café resultam em cerca de 36 ml de bebida em 25 a 30 segundos. Se "
            "sair mais rápido, moa mais fino; se demorar mais, moa mais grosso. O manômetro deve indicar entre "
            "8 e 10 bar durante a extração.",
            "Temperatura: 92 °C atende a maioria dos cafés. Para torras claras, use 94 °C e pré-infusão de 5 a 8 "
            "segundos; para torras escuras, 90 °C reduz o amargor.",
        ],
    ),
    (
        "3. Vapor e bebidas com leite",
        [
            "A caldeira dupla permite extrair o café e vaporizar o leite ao mesmo tempo. Encha a jarra até a "
            "metade com leite gelado. Abra o vapor por um segundo para purgar a água condensada antes de mergulhar "
            "o bico.",
            "Posicione o bico logo abaixo da superfície para incorporar ar até o leite crescer cerca de 30%, depois "
            "afunde um pouco para criar um redemoinho. Pare entre 60 °C e 65 °C: acima disso o leite perde dulçor.",
            "Após cada uso, limpe o bico com um pano úmido e abra o vapor por dois segundos. Leite seco dentro do "
            "bico entope os quatro furos e reduz a força do vapor.",
        ],
    ),
    (
        "4. Limpeza e descalcificação",
        [
            "Diariamente: esvazie a bandeja, lave o porta-filtro e os filtros (podem ir à lava-louças) e passe água "
            "pelo grupo sem o porta-filtro. Semanalmente: faça retrolavagem com o filtro cego e uma pastilha de "
            "limpeza.",
            "Descalcificação: a luz DESCALC acende a cada 3 meses, aproximadamente, dependendo da dureza da água. "
            "Dissolva um sachê de descalcificante Afinar em 1 L de água, coloque no reservatório e mantenha "
            "pressionados os botões de uma e duas doses por 5 segundos. O ciclo leva 25 minutos; ao final, enxágue "
            "o reservatório e rode um ciclo com água limpa.",
            "Não use vinagre: ele ataca as borrachas e a garantia não cobre danos por calcário quando a máquina não "
            "foi descalcificada.",
        ],
    ),
    (
        "5. Perguntas frequentes e solução de problemas",
        [
            "A bomba faz barulho mas não sai água. Verifique se o reservatório está encaixado e com água. Se estiver, "
            "pode haver ar na bomba: abra o vapor, acione a extração por 20 segundos e feche o vapor. Se o problema "
            "continuar, entre em contato com a assistência.",
            "O café sai aguado e rápido. A moagem está grossa ou a dose é pequena. Moa mais fino, use 18 g e "
            "pressione com firmeza.",
            "O café sai muito amargo ou demora a sair. A moagem está fina demais ou a temperatura está alta. Moa um "
            "pouco mais grosso ou reduza a temperatura em 2 °C.",
            "Vaza água pela borda do porta-filtro. A borracha do grupo está gasta ou há pó na borda. Limpe a borda; "
            "se continuar, troque a borracha (kit de borrachas e chuveiro, código BP-58).",
            "O vapor está fraco. Limpe os furos do bico com a agulha que acompanha a máquina e descalcifique se a "
            "luz DESCALC estiver acesa.",
        ],
    ),
    (
        "6. Garantia e assistência técnica",
        [
            "A Barista Pro tem garantia de 2 anos contra defeitos de fabricação, contados da data da nota fiscal. A "
            "garantia não cobre quedas, ligação em voltagem errada, uso de vinagre ou falta de descalcificação. No "
            "plano Cuidado Total (R$ 29,90 por mês), a garantia se estende para 3 anos e inclui uma revisão anual.",
            "Para acionar a garantia, fale com o suporte pelo WhatsApp (19) 3232-0000 ou pelo e-mail "
            "suporte@afinarcafes.com.br, informando o número de série que fica embaixo da bandeja. A coleta é "
            "gratuita e o reparo leva até 10 dias úteis; durante o reparo, emprestamos uma máquina reserva.",
            "Afinar Cafés Ltda. — Rua Barão de Jaguara, 1200, Campinas/SP — atendimento de segunda a sábado, das 9h "
            "às 18h.",
        ],
    ),
]


def write_pdfs() -> None:
    writer = PdfWriter()
    for title, paragraphs in MANUAL:
        text_page(writer, paragraphs, title)
    writer.add_metadata({"/Title": "Barista Pro — Manual do Produto", "/Author": "Afinar Cafés"})
    with (SAMPLES / "manual_produto.pdf").open("wb") as handle:
        writer.write(handle)

    # a short English FAQ with a scanned (image-only) page in the middle and a blank page at the end
    writer = PdfWriter()
    text_page(
        writer,
        [
            "How long does shipping take? Orders ship in 2 business days; delivery takes 3 to 10 "
            "business days depending on the region."
        ],
        "Afinar FAQ",
    )
    image_page(writer)
    text_page(writer, ["Can I return a machine? Yes, within 30 days if it is unused and in its box."])
    writer.add_page(PageObject.create_blank_page(width=595, height=842))
    with (HERE / "faq_scanned_page.pdf").open("wb") as handle:
        writer.write(handle)

    writer = PdfWriter()
    text_page(writer, ["Confidential price list: Barista Pro R$ 2.499,00."], "Tabela de preços")
    writer.encrypt(user_password="segredo", owner_password="dono", algorithm="AES-128")
    with (HERE / "encrypted.pdf").open("wb") as handle:
        writer.write(handle)

    writer = PdfWriter()
    text_page(writer, ["Esta tabela abre sem senha, mas tem restrições de impressão."], "Tabela aberta")
    writer.encrypt(user_password="", owner_password="dono", algorithm="RC4-128")
    with (HERE / "encrypted_empty_password.pdf").open("wb") as handle:
        writer.write(handle)

    manual = (SAMPLES / "manual_produto.pdf").read_bytes()
    (HERE / "truncated.pdf").write_bytes(manual[: len(manual) // 3])


def write(name: str, text: str, encoding: str = "utf-8", newline: str = "\n") -> None:
    (HERE / name).write_bytes(text.replace("\n", newline).encode(encoding))


LRM, NNBSP, NBSP, BOM = "\u200e", "\u202f", "\u00a0", "\ufeff"


def write_crm_fixtures() -> None:
    # UTF-8 with BOM, commas, CRLF, a quoted multi-line value, ISO timestamps, the default column names
    write(
        "crm_utf8_bom.csv",
        BOM
        + (
            "conversation_id,timestamp,author,text,outcome\n"
            'D-1,2025-01-06T09:00:00,Joana,"Hi, is the Barista Pro in stock?",won\n'
            'D-1,2025-01-06T09:05:00,Sales Team,"Yes! It ships today.\nFree delivery over $500.",won\n'
            'D-2,2025-01-07T14:30:00,Peter,"Can I pay in 10 installments?",lost\n'
            'D-2,2025-01-07T14:41:00,Sales Team,"Up to 10, interest-free, on credit cards.",lost\n'
        ),
        newline="\r\n",
    )
    # Windows-1252, semicolons, pt-BR headers, decimal commas, a trailing empty column on every line
    write(
        "crm_cp1252_semicolon.csv",
        (
            "Negócio;Data;Vendedor/Cliente;Descrição;Valor;Situação;\n"
            "N-10;03/02/2025 10:15;Cliente Zé;Olá, qual o preço da máquina?;1.299,90;ganho;\n"
            "N-10;03/02/2025 10:20;Ana (Vendas);Custa R$ 1.299,90 em até 10x. Ação válida até sexta!;1.299,90;ganho;\n"
            "N-11;04/02/2025 16:00;Cliente Lúcia;Vocês entregam em Goiânia?;899,00;perdido;\n"
            "N-11;04/02/2025 16:07;Ana (Vendas);Entregamos sim, em 5 dias úteis.;899,00;perdido;\n"
            "N-11;04/02/2025 16:09;Cliente Lúcia;;899,00;perdido;\n"
        ),
        encoding="cp1252",
        newline="\r\n",
    )
    # UTF-16 LE with BOM and tabs (what Excel's "Unicode text" export writes)
    write(
        "crm_utf16.tsv",
        (
            "conversation_id\ttimestamp\tauthor\ttext\toutcome\n"
            "T-1\t15/03/2025 08:00\tMüller\tGibt es die Maschine auch in Schwarz?\twon\n"
            "T-1\t15/03/2025 08:03\tSales Team\tJa, in Schwarz und Edelstahl.\twon\n"
        ),
        encoding="utf-16",
        newline="\r\n",
    )
    # pipes, a duplicated header and a blank header
    write(
        "crm_pipe_duplicate_headers.csv",
        (
            "conversation_id|timestamp|author|text|text||outcome\n"
            "P-1|2025-02-01 10:00|Rita|Do you sell beans?|note A|x|won\n"
            "P-1|2025-02-01 10:02|Sales Team|Yes, 1 kg bags.|note B|y|won\n"
        ),
    )
    # UTF-8 file where two rows were pasted from a Windows-1252 tool: those rows are quarantined
    good = "conversation_id,timestamp,author,text,outcome\nM-1,2025-01-01 10:00,Ana,Olá! Você está aí?,won\n".encode()
    bad = "M-1,2025-01-01 10:01,Bruno,Não sei o preço,won\nM-1,2025-01-01 10:02,Ana,Promoção até amanhã,won\n"
    (HERE / "crm_mixed_encoding.csv").write_bytes(
        good + bad.encode("cp1252") + "M-1,2025-01-01 10:03,Bruno,Até já,won\n".encode()
    )
    # a row with an unquoted comma inside the text: more fields than the header
    write(
        "crm_ragged_row.csv",
        (
            "conversation_id,timestamp,author,text,outcome\n"
            "R-1,2025-01-01 10:00,Ana,Hello there,won\n"
            "R-1,2025-01-01 10:01,Bob,I want two, maybe three, machines,won\n"
            "R-1,2025-01-01 10:02,Ana,Great choice,won\n"
        ),
    )
    # US dates with AM/PM
    write(
        "crm_us_dates.csv",
        (
            "conversation_id,timestamp,author,text,outcome\n"
            "U-1,03/14/2025 2:05 PM,Dana,Do you ship to Texas?,won\n"
            "U-1,03/14/2025 2:09 PM,Sales Team,Yes, in 5 business days.,won\n"
        ).replace("Yes, in 5 business days.", '"Yes, in 5 business days."'),
    )
    full = (HERE / "crm_utf8_bom.csv").read_bytes()
    (HERE / "crm_truncated.csv").write_bytes(full[: full.index(b"Up to 10") + 5])
    write("crm_header_only.csv", "conversation_id,timestamp,author,text,outcome\n")
    (HERE / "empty.csv").write_bytes(b"")
    (HERE / "binary_named.csv").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    write(
        "crm_records.jsonl",
        "\n".join(
            json.dumps(r, ensure_ascii=False)
            for r in [
                {
                    "conversation_id": "J-1",
                    "timestamp": "2025-04-01T10:00:00Z",
                    "author": "Li",
                    "text": "Price?",
                    "outcome": "won",
                    "tags": ["lead", "web"],
                    "amount": 10.5,
                },
                {
                    "conversation_id": "J-1",
                    "timestamp": "2025-04-01T10:02:00Z",
                    "author": "Sales Team",
                    "text": "R$ 899,90.",
                    "outcome": "won",
                    "tags": [],
                    "amount": None,
                },
            ]
        )
        + "\n",
    )
    write(
        "crm_records.json",
        json.dumps(
            [
                {
                    "conversation_id": "K-1",
                    "timestamp": "2025-04-02 11:00",
                    "author": "Kim",
                    "text": "Hi",
                    "outcome": "lost",
                },
                {
                    "conversation_id": "K-1",
                    "timestamp": "2025-04-02 11:05",
                    "author": "Sales Team",
                    "text": "Hello!",
                    "outcome": "lost",
                },
            ],
            ensure_ascii=False,
            indent=1,
        ),
    )
    import polars as pl

    pl.DataFrame(
        {
            "conversation_id": ["Q-1", "Q-1"],
            "timestamp": [datetime(2025, 5, 1, 9, 0), datetime(2025, 5, 1, 9, 1)],
            "author": ["Quinn", "Sales Team"],
            "text": ["Is the grinder quiet?", "About 68 dB."],
            "outcome": ["won", "won"],
            "amount": [649.0, 649.0],
        }
    ).write_parquet(HERE / "crm_export.parquet")
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Interações"
    sheet.append(["conversation_id", "timestamp", "author", "text", "outcome", None])
    sheet.append(["X-1", datetime(2025, 6, 2, 10, 0), "Xavier", "Vocês têm garantia?", "ganho"])
    sheet.append([None, None, None, None, None])
    sheet.append(["X-1", datetime(2025, 6, 2, 10, 4), "Ana (Vendas)", "Dois anos de garantia.", "ganho"])
    notes = book.create_sheet("Notas")
    notes.append(["conversation_id", "timestamp", "author", "text", "outcome"])
    notes.append(["X-2", "02/06/2025 11:00", "Yara", "Qual o prazo?", "perdido"])
    book.save(HERE / "crm_export.xlsx")


WHATSAPP = {
    # Android, English (US): 12-hour clock, month first
    "wa_android_en_us.txt": (
        "1/15/24, 9:41 AM - Messages and calls are end-to-end encrypted. No one outside of this chat, not even "
        "WhatsApp, can read or listen to them. Tap to learn more.\n"
        "1/15/24, 9:42 AM - Sam Lee: Hi! Is the espresso machine still on sale?\n"
        "1/15/24, 9:45 AM - Afinar Sales: Yes, until Friday.\n"
        "It also comes with a free grinder.\n"
        "1/15/24, 12:03 PM - Sam Lee: <Media omitted>\n"
        "1/15/24, 12:10 PM - Sam Lee: This message was deleted\n"
        "1/15/24, 1:00 PM - Sam Lee changed their phone number to a new number. Tap to message or add the new number.\n"
        "1/16/24, 12:30 AM - Afinar Sales: IMG-20240116-WA0003.jpg (file attached)\n"
    ),
    # Android, English (UK): 24-hour clock, day first
    "wa_android_en_uk.txt": (
        "15/01/2024, 21:41 - Olivia: Evening, do you deliver to Leeds?\n"
        "15/01/2024, 21:50 - Afinar Sales: We do, in 3-5 working days.\n"
        "16/01/2024, 08:02 - Olivia: <Media omitted>\n"
    ),
    # Android, Portuguese (Portugal)
    "wa_android_pt_pt.txt": (
        "03/02/24, 10:15 - Rui: Bom dia, têm a máquina em stock?\n"
        "03/02/24, 10:20 - Loja Afinar: Bom dia! Temos sim.\n"
        "03/02/24, 10:21 - Rui: <Multimédia omitida>\n"
        "03/02/24, 10:22 - Rui: Esta mensagem foi eliminada\n"
    ),
    # Android, Spanish: "p. m." with a narrow no-break space, as recent Android versions write it
    "wa_android_es.txt": (
        f"25/12/23, 9:05{NNBSP}p.{NBSP}m. - Lucía: ¿Hacen envíos a Madrid?\n"
        f"25/12/23, 9:07{NNBSP}p.{NBSP}m. - Afinar Ventas: Sí, en 5 días hábiles.\n"
        f"26/12/23, 12:01{NNBSP}a.{NBSP}m. - Lucía: <Multimedia omitido>\n"
        f"26/12/23, 8:00{NNBSP}a.{NBSP}m. - Lucía: Se eliminó este mensaje.\n"
    ),
    # Android, German: dotted dates
    "wa_android_de.txt": (
        "31.12.23, 21:41 - Jonas: Hallo, gibt es Rabatt?\n"
        "31.12.23, 21:45 - Afinar Verkauf: Ja, 10 % bis Neujahr.\n"
        "01.01.24, 10:00 - Jonas: <Medien ausgeschlossen>\n"
        "01.01.24, 10:01 - Jonas: Diese Nachricht wurde gelöscht.\n"
    ),
    # Android, pt-BR: a phone-number sender wrapped in direction marks, a stray BOM mid-line, an attachment
    "wa_android_pt_br.txt": (
        "Exportado do WhatsApp\n"
        "10/03/2025 09:02 - As mensagens e ligações são protegidas com a criptografia de ponta a ponta.\n"
        "10/03/2025 09:05 - \u202a+55 11 97654-3210\u202c: Oi, vocês consertam máquina?\n"
        f"10/03/2025 09:07 - Loja Afinar: {BOM}Consertamos sim!\n"
        "10/03/2025 09:08 - \u202a+55 11 97654-3210\u202c: IMG-20250310-WA0001.jpg (arquivo anexado)\n"
        "10/03/2025 09:09 - Loja Afinar: Esta mensagem foi apagada\n"
        "10/03/2025 09:10 - Loja Afinar: Orçamento enviado <Mensagem editada>\n"
        "10/03/2025 09:11 - \u202a+55 11 97654-3210\u202c mudou para +55 11 91234-0000\n"
    ),
    # iOS, English (US): brackets, seconds, U+202F before PM, U+200E before media and system text
    "wa_ios_en.txt": (
        f"[1/15/24, 9:41:05{NNBSP}PM] Afinar Sales: {LRM}Messages and calls are end-to-end encrypted. No one "
        "outside of this chat, not even WhatsApp, can read or listen to them.\n"
        f"[1/15/24, 9:42:10{NNBSP}PM] Mia: Hello! Quick question\n"
        "about the warranty: is it 2 years?\n"
        f"{LRM}[1/15/24, 9:43:00{NNBSP}PM] Mia: {LRM}image omitted\n"
        f"[1/15/24, 9:44:00{NNBSP}PM] Afinar Sales: Yes, 2 years.\n"
        f"{LRM}[1/15/24, 9:45:00{NNBSP}PM] Mia: {LRM}<attached: 00000012-PHOTO-2024-01-15-21-45-00.jpg>\n"
    ),
}


def write_text_fixtures() -> None:
    write_crm_fixtures()
    for name, text in WHATSAPP.items():
        write(name, text, newline="\r\n" if "ios" in name else "\n")
    write("wa_android_utf16.txt", WHATSAPP["wa_android_en_uk.txt"], encoding="utf-16")
    ios_pt = (
        f"[31/12/2023, 21:41:05] Loja Afinar: {LRM}As mensagens e ligações são protegidas com a criptografia de "
        "ponta a ponta.\n"
        "[31/12/2023, 21:42:00] Maria Clara: Boa noite! Vocês abrem amanhã?\n"
        f"{LRM}[31/12/2023, 21:43:00] Maria Clara: {LRM}imagem ocultada\n"
        "[31/12/2023, 21:44:00] Loja Afinar: Abrimos só dia 2. Feliz ano novo!\n"
    )
    with zipfile.ZipFile(HERE / "WhatsApp Chat - Maria Clara.zip", "w") as archive:
        archive.writestr("_chat.txt", ios_pt.replace("\n", "\r\n"))
        archive.writestr("00000003-PHOTO-2023-12-31-21-43-00.jpg", b"\xff\xd8\xff\xe0" + b"0" * 64)
    with zipfile.ZipFile(HERE / "zip_slip.zip", "w") as archive:
        archive.writestr("chat.txt", WHATSAPP["wa_android_en_uk.txt"])
        archive.writestr("../../evil.txt", "owned")
    # transcripts
    write(
        "talk.vtt",
        (
            "WEBVTT - product training\n\n"
            "NOTE recorded on 2025-03-31\nedited by hand\n\n"
            "STYLE\n::cue { color: white }\n\n"
            "intro\n00:00:01.000 --> 00:00:04.000 align:start position:10% line:0\n"
            "<v.lead Maria Silva>Welcome to the <b>Barista Pro</b> training.</v>\n\n"
            "00:00:04.200 --> 00:00:07.000\n<v Maria Silva>We start with the grinder<00:00:05.500> settings.\n\n"
            "00:00:09.500 --> 00:00:12.000\n<v João>Which setting for espresso?\n\n"
            "00:00:12.300 --> 00:00:15.000\n<v Maria Silva><c.yellow>Levels 1 to 10</c> &amp; a fine grind.\n\n"
            "00:00:15.100 --> 00:00:16.000\n\n\n"
            "00:00:17.000 --> 00:00:19.000\n<i>[music]</i>\n"
        ),
        newline="\r\n",
    )
    write(
        "talk_cp1252.srt",
        (
            "1\n00:00:01,000 --> 00:00:03,500\nCarlos: Bom dia, equipe.\n\n"
            "2\n00:00:03,600 --> 00:00:06,000\nCarlos: Vamos falar de promoções.\n\n"
            "3\n00:00:07,000 --> 00:00:09,000\n[Ana] <i>A promoção vale até sexta?</i>\n\n"
            "4\n00:00:09,000 -> 00:00:10,000\nlinha com tempo quebrado\n\n"
            "5\n00:00:10,500 --> 00:00:12,000\n{\\an8}Carlos: Sim, até sexta-feira às 18h.\n"
        ),
        encoding="cp1252",
        newline="\r\n",
    )
    write(
        "rolling_captions.vtt",
        (
            "WEBVTT\n\n"
            "00:00:00.000 --> 00:00:02.000\nso the first thing\n\n"
            "00:00:02.000 --> 00:00:04.000\nso the first thing\nyou do is descale it.\n\n"
        ),
    )
    # datasets
    write(
        "alpaca.json",
        json.dumps(
            [
                {"instruction": "Qual a garantia da Barista Pro?", "input": "", "output": "Dois anos."},
                {
                    "instruction": "Traduza para o inglês.",
                    "input": "Bom dia",
                    "output": "Good morning",
                    "system": "Seja breve.",
                },
                {"instruction": "Sem resposta"},
            ],
            ensure_ascii=False,
            indent=2,
        ),
    )
    write(
        "alpaca.jsonl",
        "\n".join(
            [
                json.dumps(
                    {"instruction": "Preço do moedor?", "input": "", "output": "R$ 649,00."}, ensure_ascii=False
                ),
                '{"instruction": "linha cortada", "output": ',
                json.dumps({"instruction": "", "output": "vazio"}),
                "",
                json.dumps({"prompt": "Capital of Brazil?", "completion": "Brasília."}),
            ]
        )
        + "\n",
    )
    write(
        "sharegpt.jsonl",
        "\n".join(
            json.dumps(r, ensure_ascii=False)
            for r in [
                {
                    "conversations": [
                        {"from": "system", "value": "You are Afinar's sales assistant."},
                        {"from": "human", "value": "Do you ship to Rio?"},
                        {"from": "gpt", "value": "Yes, in 3 to 5 business days."},
                        {"from": "human", "value": "Free shipping?"},
                        {"from": "gpt", "value": "Above R$ 500."},
                    ]
                },
                {"conversations": [{"from": "human", "value": "hi"}, {"from": "robot", "value": "hello"}]},
                {"conversations": [{"from": "human", "value": "only a question"}]},
            ]
        )
        + "\n",
    )
    write(
        "openai_chat.jsonl",
        "\n".join(
            json.dumps(r, ensure_ascii=False)
            for r in [
                {
                    "messages": [
                        {"role": "system", "content": "Be concise."},
                        {"role": "user", "content": "Is the grinder quiet?"},
                        {"role": "assistant", "content": [{"type": "text", "text": "About 68 dB."}]},
                    ]
                },
                {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant"}]},
                {"messages": [{"role": "user", "content": "Hi"}, {"role": "customer", "content": "?"}]},
                {"messages": "not a list"},
                {"messages": [{"role": "user", "content": "Hi"}]},
            ]
        )
        + "\n",
    )
    write(
        "preferences.jsonl",
        "\n".join(
            json.dumps(r, ensure_ascii=False)
            for r in [
                {"prompt": "Qual a garantia?", "chosen": "Dois anos contra defeitos.", "rejected": "Não sei."},
                {
                    "prompt": [{"role": "user", "content": "Frete grátis?"}],
                    "chosen": [{"role": "assistant", "content": "Acima de R$ 500."}],
                    "rejected": [{"role": "assistant", "content": "Nunca."}],
                },
                {"prompt": "Oi", "chosen": "Olá!", "rejected": "Olá!"},
                {"prompt": "Oi", "chosen": "Olá!"},
            ]
        )
        + "\n",
    )
    write("notes.txt", "Just some notes from the meeting.\nNothing structured here.\n")
    (HERE / "unknown.bin").write_bytes(b"\x00\x01\x02\x03" * 10)


if __name__ == "__main__":
    write_pdfs()
    write_text_fixtures()
