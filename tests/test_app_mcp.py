"""The app as an MCP tool server (`GRADIO_MCP_SERVER=True`, what `python app.py --mcp` turns on):
an MCP client lists the `predict` tool and calls it on real audio and on a corrupt file."""

import asyncio
import base64
import io

import pytest
import soundfile as sf

from .app_server import running_app
from .conftest import speechlike, tiny_config

pytestmark = pytest.mark.needs_server

mcp = pytest.importorskip("mcp", reason="Gradio's MCP extra is not installed (pip install 'gradio[mcp]')")
from mcp.client.streamable_http import streamablehttp_client  # noqa: E402

LABELS = set(tiny_config().id2label.values())


def data_url(payload: bytes, mime: str) -> str:
    # MCP clients pass files as URLs; Gradio refuses loopback http URLs (SSRF protection) but
    # accepts data: URLs, which keeps the test on one machine.
    return f"data:{mime};base64,{base64.b64encode(payload).decode()}"


def wav_bytes(seconds: float) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, speechlike(seconds), 16_000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


async def call_predict(url: str, audio: str):
    async with streamablehttp_client(url) as (read, write, _):
        async with mcp.ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            result = await session.call_tool("predict", {"audio_path": audio})
            return tools.tools, result


@pytest.fixture(scope="module")
def mcp_url(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("mcp"), env={"GRADIO_MCP_SERVER": "True"}) as url:
        yield url + "gradio_api/mcp/"


def test_predict_is_a_tool_that_classifies_audio(mcp_url):
    tools, result = asyncio.run(call_predict(mcp_url, data_url(wav_bytes(0.8), "audio/wav")))
    assert [tool.name for tool in tools] == ["predict"]
    # Written as sentences (app.PREDICT_DESCRIPTION), not docstring lines joined with commas.
    assert tools[0].description.startswith("Classifies the emotion in a recording of speech")
    assert "Fourth, the whole result as JSON" in tools[0].description and ", run of" not in tools[0].description
    assert not result.isError
    text = result.content[0].text
    # The first output is the gr.Label value: the top emotion and one confidence per class.
    assert all(f"'{label}'" in text for label in LABELS)
    assert "'confidences'" in text and "'positive'" in text


def test_a_corrupt_file_gives_the_sentence(mcp_url):
    _, result = asyncio.run(call_predict(mcp_url, data_url(b"RIFF, but not audio at all" * 40, "audio/wav")))
    assert result.isError
    assert "not a supported audio file or it is corrupt." in result.content[0].text
    assert "Traceback" not in result.content[0].text
