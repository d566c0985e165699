"""Configuration of the Asterisk backends: sections, exactly one secret, secrets kept out."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialerd.config import ConfigError, decode_config

SOURCE = "config/site.toml"
ARI = '[telephony]\nbackend = "asterisk"\n[telephony.asterisk]\n'
AMI = '[queue]\nbackend = "asterisk"\n[queue.asterisk]\n'


def config_error(text: str) -> str:
    with pytest.raises(ConfigError) as raised:
        decode_config(text, SOURCE)
    return str(raised.value)


def test_sim_needs_no_asterisk_section() -> None:
    config = decode_config("", SOURCE)
    assert config.telephony.asterisk is None
    assert config.queue.asterisk is None


def test_asterisk_telephony_defaults() -> None:
    ari = decode_config(ARI + 'password = "s3cret"\n', SOURCE).telephony.asterisk
    assert ari is not None
    assert ari.ari_url == "http://127.0.0.1:8088"
    assert ari.app == "dialerd"
    assert ari.endpoint == "PJSIP/{number}@trunk"
    assert (ari.queue_context, ari.agentless_context) == ("dialerd-queue", "dialerd-agentless")
    assert ari.amd is False
    assert ari.queue_timeout == 20
    assert ari.read_password() == "s3cret"
    # Prompts are served to Asterisk on loopback unless the operator says otherwise.
    assert ari.media_address() == ("127.0.0.1", 8090)
    assert ari.prompts_url() == "http://127.0.0.1:8090"
    assert (ari.amd_context, ari.recording_dir) == ("dialerd-amd-action", "dialerd")
    # The registration check: every 15 s, its user event given 10 s to come back.
    assert (ari.registration_check_interval, ari.registration_check_timeout) == (15.0, 10.0)


def test_the_registration_check_is_configured() -> None:
    text = (
        ARI + 'password = "a"\nregistration_check_interval = 2\nregistration_check_timeout = 30\n'
    )
    ari = decode_config(text, SOURCE).telephony.asterisk
    assert ari is not None
    # A timeout longer than the interval is allowed: the checks run one after the other.
    assert (ari.registration_check_interval, ari.registration_check_timeout) == (2.0, 30.0)


def test_prompts_served_on_one_address_fetched_from_another() -> None:
    text = ARI + 'password = "a"\nmedia_listen = "[::]:9000"\nmedia_url = "https://d.example"\n'
    ari = decode_config(text, SOURCE).telephony.asterisk
    assert ari is not None
    assert ari.media_address() == ("::", 9000)
    assert ari.prompts_url() == "https://d.example"


def test_asterisk_queue_defaults() -> None:
    ami = decode_config(AMI + 'secret = "s3cret"\n', SOURCE).queue.asterisk
    assert ami is not None
    assert (ami.host, ami.port, ami.username) == ("127.0.0.1", 5038, "dialerd")
    assert ami.read_secret() == "s3cret"


def test_backend_asterisk_without_its_section() -> None:
    message = config_error('[telephony]\nbackend = "asterisk"\n')
    assert "[telephony.asterisk]" in message
    assert "`$.telephony`" in message
    assert "[queue.asterisk]" in config_error('[queue]\nbackend = "asterisk"\n')


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ARI, "exactly one of password and password_file"),
        (ARI + 'password = "a"\npassword_file = "/b"\n', "exactly one of password"),
        (AMI, "exactly one of secret and secret_file"),
        (ARI + 'password = "a"\nendpoint = "PJSIP/trunk"\n', "{number}"),
        (ARI + 'password = "a"\nari_url = "ws://x"\n', "http://"),
        (ARI + 'password = "a"\napp = "a b"\n', "`$.telephony.asterisk.app`"),
        (ARI + 'password = "a"\nqueue_timeout = 0\n', "`$.telephony.asterisk.queue_timeout`"),
        (AMI + 'secret = "a"\nport = 70000\n', "`$.queue.asterisk.port`"),
        (ARI + 'password = "a"\npasword = "b"\n', "`pasword`"),
        (AMI + 'secret = "a"\nhots = "b"\n', "`hots`"),
        ('[telephony]\nbackend = "freeswitch"\n', "`$.telephony.backend`"),
        (ARI + 'password = "a"\nmedia_listen = "8090"\n', 'media_listen must be "host:port"'),
        (ARI + 'password = "a"\nmedia_url = "ftp://x"\n', "media_url must start with http"),
        (ARI + 'password = "a"\nrecording_dir = "../etc"\n', "recording_dir"),
        *(
            (ARI + f'password = "a"\n{key} = {value}\n', f"`$.telephony.asterisk.{key}`")
            for key in ("registration_check_interval", "registration_check_timeout")
            for value in ("0", "-5", "0.5", "7200", '"15"')
        ),
        ('[tts]\nengine = "command"\ncommand = ["piper"]\n', "{output}"),
        ('[tts]\nengine = "festival"\n', "`$.tts.engine`"),
    ],
)
def test_errors_name_the_key(text: str, expected: str) -> None:
    message = config_error(text)
    assert message.startswith(f"{SOURCE}: ")
    assert expected in message


def test_secret_files_are_read_and_stripped(tmp_path: Path) -> None:
    (tmp_path / "ari").write_text("from-file\n")
    (tmp_path / "ami").write_text("ami-file\n")
    (tmp_path / "ari").chmod(0o600)
    (tmp_path / "ami").chmod(0o600)
    config = decode_config(
        ARI + f'password_file = "{tmp_path / "ari"}"\n'
        '[queue]\nbackend = "asterisk"\n[queue.asterisk]\n'
        f'secret_file = "{tmp_path / "ami"}"\n',
        SOURCE,
    )
    assert config.telephony.asterisk is not None
    assert config.telephony.asterisk.read_password() == "from-file"
    assert config.queue.asterisk is not None
    assert config.queue.asterisk.read_secret() == "ami-file"


def test_an_unreadable_secret_file_names_the_file_not_its_content(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    ari = decode_config(ARI + f'password_file = "{missing}"\n', SOURCE).telephony.asterisk
    assert ari is not None
    with pytest.raises(
        ConfigError, match=r"\[telephony.asterisk\] password_file .*nope.*cannot read"
    ):
        ari.read_password()
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    ami = decode_config(AMI + f'secret_file = "{empty}"\n', SOURCE).queue.asterisk
    assert ami is not None
    with pytest.raises(ConfigError, match="is empty"):
        ami.read_secret()
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe")
    binary.chmod(0o600)
    ami = decode_config(AMI + f'secret_file = "{binary}"\n', SOURCE).queue.asterisk
    assert ami is not None
    with pytest.raises(ConfigError, match="not UTF-8") as raised:
        ami.read_secret()
    assert "\\xff" not in str(raised.value)


def test_secrets_stay_out_of_repr() -> None:
    config = decode_config(
        ARI + 'password = "hunter2-ari"\n' + AMI + 'secret = "hunter2-ami"\n', SOURCE
    )
    shown = repr(config)
    assert "hunter2" not in shown
    assert "password=***" in shown
    assert "secret=***" in shown


def test_the_commented_asterisk_sections_of_the_example_config_are_valid() -> None:
    text = (Path(__file__).resolve().parents[2] / "config" / "dialerd.toml").read_text()
    lines = text.splitlines()
    for section in ("[telephony.asterisk]", "[queue.asterisk]", "[tts]"):
        start = lines.index(f"# {section}")
        index = start
        while index < len(lines) and lines[index].startswith("# "):
            lines[index] = lines[index][2:]
            index += 1
    uncommented = "\n".join(lines).replace('backend = "sim"', 'backend = "asterisk"', 2)
    config = decode_config(uncommented, "config/dialerd.toml")
    assert config.telephony.backend == "asterisk"
    assert config.telephony.asterisk is not None
    assert config.telephony.asterisk.password_file == "/etc/dialerd/ari-password"
    assert config.queue.asterisk is not None
    assert config.queue.asterisk.port == 5038
    assert config.tts.command[-1] == "{output}"


def test_a_password_file_others_may_read_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "ari"
    file.write_text("from-file\n")
    file.chmod(0o644)
    ari = decode_config(ARI + f'password_file = "{file}"\n', SOURCE).telephony.asterisk
    assert ari is not None
    with pytest.raises(
        ConfigError, match=r"\[telephony.asterisk\] password_file .* open to others"
    ):
        ari.read_password()
