"""``onellm chat`` driven through a pseudo-terminal, as a person types: Ctrl-C stops an answer and keeps the session,
/help, /image PATH, unknown commands, bad paths reported before the model loads."""
import fcntl
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import torch

from helpers import processor_for, tiny_model_with_tokenizer, write_input_files

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def endless_model_dir(text_tokenizer, tmp_path_factory):
    """A tiny model that never ends an answer: the LM-head rows of EOS and of every token with a '#' are zero, so
    greedy decoding always prefers another token (answers run to --max-new-tokens)."""
    model = tiny_model_with_tokenizer(text_tokenizer)
    hf = text_tokenizer.hf
    never = [text_tokenizer.eos_id] + [i for i in range(len(text_tokenizer)) if "#" in hf.convert_ids_to_tokens(i)]
    with torch.no_grad():
        model.llm.lm_head.weight[never] = 0.0
    return model.save_pretrained(tmp_path_factory.mktemp("endless") / "m", processor=processor_for(model, text_tokenizer))


class Terminal:
    """A child process on a pty; ``expect`` reads until a text appears after what earlier calls matched (or fails
    after ``timeout`` seconds), so a prompt printed before does not count as the next one."""

    def __init__(self, *args: str):
        self.master, slave = pty.openpty()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}

        def controlling_terminal():  # a session of its own with the pty as its terminal: Ctrl-C sends SIGINT
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            # as a login shell would start it: a test run launched in the background (`cmd &` in a script) ignores
            # SIGINT, and an ignored signal stays ignored across exec, so Ctrl-C would never reach the chat
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, [])

        self.proc = subprocess.Popen([sys.executable, "-m", "onellm.cli", *args], stdin=slave, stdout=slave,
                                     stderr=slave, cwd=ROOT, env=env, preexec_fn=controlling_terminal)
        os.close(slave)
        self.out = ""
        self.matched = 0  # self.out up to here was consumed by earlier expect calls

    def expect(self, text: str, timeout: float = 240.0, kill: bool = True) -> str:
        deadline = time.time() + timeout
        while text not in self.out[self.matched:]:
            left = deadline - time.time()
            if left <= 0:
                if kill:  # the child must not outlive the failed test (it would load the machine for the rest)
                    self.proc.kill()
                raise AssertionError(f"{text!r} did not appear; output so far:\n{self.out}")
            ready, _, _ = select.select([self.master], [], [], min(left, 1.0))
            if ready:
                try:
                    self.out += os.read(self.master, 4096).decode(errors="replace")
                except OSError:  # the child closed the terminal
                    assert text in self.out[self.matched:], f"{text!r} never appeared; output:\n{self.out}"
        self.matched = self.out.index(text, self.matched) + len(text)
        return self.out

    def read_more(self, chars: int, timeout: float = 120.0) -> None:
        """Read until ``chars`` more characters have arrived (e.g. part of a streamed answer)."""
        start, deadline = len(self.out), time.time() + timeout
        while len(self.out) < start + chars and time.time() < deadline:
            if select.select([self.master], [], [], 0.05)[0]:
                self.out += os.read(self.master, 4096).decode(errors="replace")
        assert len(self.out) >= start + chars, self.out

    def interrupt_at_prompt(self, reply: str, tries: int = 5) -> None:
        """Ctrl-C at the ``input()`` prompt until ``reply`` appears. CPython checks signals only when a read is
        interrupted: a SIGINT that lands after the prompt is written but before ``read`` blocks only sets the
        flag, and the next Ctrl-C (or line) raises it. A person never types that fast; a test can, so it retries."""
        for attempt in range(tries):
            self.send("\x03")
            try:
                self.expect(reply, timeout=10.0 if attempt < tries - 1 else 240.0, kill=attempt == tries - 1)
                return
            except AssertionError:
                if attempt == tries - 1:
                    raise

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> int:
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # say what the terminal showed: a hang is otherwise undiagnosable
            self.proc.kill()
            while select.select([self.master], [], [], 0.2)[0]:
                try:
                    self.out += os.read(self.master, 4096).decode(errors="replace")
                except OSError:
                    break
            raise AssertionError(f"the chat did not exit within 60 s; output:\n{self.out}") from None
        finally:
            os.close(self.master)


def test_ctrl_c_stops_the_answer_and_keeps_the_session(endless_model_dir, tmp_path):
    files = write_input_files(tmp_path)
    term = Terminal("chat", "--model", str(endless_model_dir), "--image", str(tmp_path / files["image"]["path"]),
                    "--max-new-tokens", "400", "--temperature", "0")
    term.expect("/help lists the commands.")
    assert "inputs: image" in term.out and "modalities image, video, audio" in term.out
    term.expect("> ")
    term.send("/help\n")
    term.expect("/quit  leave")
    term.send("/smell x\n")
    term.expect("unknown command /smell; /help lists the commands")
    term.send(f"/audio {tmp_path / files['audio']['path']}\n")
    term.expect("(audio input:")
    term.send("/inputs\n")
    term.expect("audio (1, ")
    term.send(f"/point {tmp_path / 'nowhere.npy'}\n")
    term.expect("error: ")  # a bad input mid-session is reported; the session goes on
    term.send("Describe it in great detail please.\n")
    term.read_more(80)  # some of the answer has streamed
    term.send("\x03")  # Ctrl-C, as the terminal sends it: SIGINT to the chat
    term.expect("[stopped]")
    term.expect("> ")
    term.interrupt_at_prompt("(/quit or Ctrl-D leaves)")  # at the prompt: a hint, no traceback
    term.send("/quit\n")
    assert term.close() == 0
    assert "Traceback" not in term.out and "terminate called" not in term.out


def test_ctrl_d_leaves_cleanly(model_dir):
    term = Terminal("chat", "--model", str(model_dir), "--max-new-tokens", "4")
    term.expect("> ")
    term.send("\x04")  # end of input
    assert term.close() == 0


def test_bad_input_path_is_reported_before_the_model_loads(tmp_path):
    # the model directory does not exist either: the input is checked first, so that is what the message names
    res = subprocess.run([sys.executable, "-m", "onellm.cli", "chat", "--model", str(tmp_path / "no-model"),
                          "--audio", str(tmp_path / "missing.wav")], capture_output=True, text=True, cwd=ROOT,
                         timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"onellm chat: error: {tmp_path / 'missing.wav'}: file not found"]
    res = subprocess.run([sys.executable, "-m", "onellm.cli", "chat", "--model", str(tmp_path / "no-model"),
                          "--depth", str(tmp_path / "d.txt")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 2 and "unsupported file extension" in res.stderr and res.stderr.count("\n") == 1


def test_interrupt_signal_mid_answer_does_not_abort_the_process(endless_model_dir, tmp_path):
    """The process-level symptom of the old chat: SIGINT during generation killed it with exit 134."""
    term = Terminal("chat", "--model", str(endless_model_dir), "--max-new-tokens", "400", "--temperature", "0")
    term.expect("> ")
    term.send("Tell me everything.\n")
    term.read_more(80)  # mid-answer (a fixed sleep could outlast it)
    os.killpg(term.proc.pid, signal.SIGINT)
    term.expect("[stopped]")
    term.expect("> ", timeout=120)
    term.send("/quit\n")
    assert term.close() == 0


def test_ctrl_c_twice_in_a_row_still_keeps_the_session(endless_model_dir):
    """A second Ctrl-C while the first one is still stopping the answer (a person pressing twice) ends the turn,
    not the program."""
    term = Terminal("chat", "--model", str(endless_model_dir), "--max-new-tokens", "400", "--temperature", "0")
    term.expect("> ")
    term.send("Tell me everything.\n")
    start = len(term.out)
    deadline = time.time() + 120
    while len(term.out) < start + 40 and time.time() < deadline:  # the answer streams
        ready, _, _ = select.select([term.master], [], [], 0.2)
        if ready:
            term.out += os.read(term.master, 4096).decode(errors="replace")
    term.send("\x03\x03")
    term.expect("[stopped]")
    term.expect("> ", timeout=120)
    term.send("/quit\n")
    assert term.close() == 0
    assert "interrupted" not in term.out and "Traceback" not in term.out
