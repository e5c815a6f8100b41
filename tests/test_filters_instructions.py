"""filters.instructions: Self-Instruct's instruction rules, refusals, turns, and the parsers
of a model's numbered task list and instance answer (hand-written shapes and real recorded
SmolLM2-135M-Instruct replies from tests/data/smollm2_replies.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from filters.instructions import (
    DEFAULT_BLACKLIST,
    InstructionFilter,
    InstructionFilterConfig,
    RefusalFilter,
    RefusalFilterConfig,
    TurnFilter,
    parse_instance,
    parse_numbered_tasks,
)

REPLIES_PATH = Path(__file__).parent / "data" / "smollm2_replies.json"


@pytest.fixture(scope="module")
def replies() -> dict:
    return json.loads(REPLIES_PATH.read_text(encoding="utf-8"))


def words(n: int) -> str:
    return " ".join(f"word{i}" for i in range(n))


# --- InstructionFilter -----------------------------------------------------------------------


class TestInstructionFilterWordCount:
    def test_defaults_follow_self_instruct(self):
        config = InstructionFilterConfig()
        assert (config.min_words, config.max_words) == (4, 150)
        assert "go to" in config.blacklist and "image" in config.blacklist
        assert config.forbidden_prefixes == ["write a program"]
        assert config.leading_punctuation is True

    @pytest.mark.parametrize(
        ("n", "reason"),
        [(0, "instruction:too_short"), (1, "instruction:too_short"), (3, "instruction:too_short"),
         (4, None), (5, None), (150, None), (151, "instruction:too_long"), (400, "instruction:too_long")],
    )
    def test_bounds(self, n, reason):
        assert InstructionFilter()(words(n)).reason == reason

    def test_words_are_white_space_separated(self):
        verdict = InstructionFilter()("  Sort\tthese\nthree\u00a0numbers  ")
        assert verdict.signals["instruction.word_count"] == 4.0
        assert verdict.keep
        # punctuation glued to a word does not make it a separate word
        assert InstructionFilter()("Sort, these, numbers!").reason == "instruction:too_short"

    def test_custom_bounds(self):
        f = InstructionFilter(InstructionFilterConfig(min_words=2, max_words=5))
        assert f("Summarize this.").keep
        assert f("Summarize.").reason == "instruction:too_short"
        assert f(words(5)).keep
        assert f(words(6)).reason == "instruction:too_long"

    def test_signals_are_namespaced_and_complete(self):
        verdict = InstructionFilter()("- Draw a map and a graph of the city.")
        assert verdict.signals == {
            "instruction.word_count": 10.0,
            "instruction.blacklisted": 3.0,
            "instruction.leading_punct": 1.0,
            "instruction.forbidden_prefix": 0.0,
        }
        assert verdict.text is None

    def test_config_validation(self):
        with pytest.raises(ValidationError):
            InstructionFilterConfig(min_words=0)
        with pytest.raises(ValidationError):
            InstructionFilterConfig(max_words=0)
        with pytest.raises(ValidationError):
            InstructionFilterConfig(blacklistt=["typo"])


class TestInstructionFilterBlacklist:
    @pytest.mark.parametrize(
        "text",
        [
            "Draw a picture of a cat sitting on a mat.",
            "Plot the following data points on a chart.",
            "Describe the IMAGE below in detail.",
            "Summarize the attached files for me please.",
            "Compose a piece of music for a wedding.",
            "Create a flowchart for the hiring process.",
            "Go to the nearest store and buy some milk.",
            "Please go   to the website and sign up.",
            "Please GO\nTO the website and sign up.",
            "Find the shortest route on the map, please.",
            "Turn this audio clip into a transcript.",
        ],
    )
    def test_dropped(self, text):
        verdict = InstructionFilter()(text)
        assert verdict.reason == "instruction:blacklist"
        assert verdict.signals["instruction.blacklisted"] >= 1

    @pytest.mark.parametrize(
        "text",
        [
            "Imagine a world without war and describe it.",  # image inside imagine
            "Describe the drawbacks of nuclear power plants.",  # draw inside drawbacks
            "Write a profile of a famous scientist.",  # file inside profile
            "Explain why going to bed early helps.",  # going to, not go to
            "Name a good place to go. Then explain why.",  # go, then a sentence break
            "Explain how a mapping between two sets works.",  # map inside mapping
            "Explain the difference between a graphic novel and a comic.",  # graph inside graphic
            "Explain the plotline of Hamlet in two sentences.",  # plot inside plotline
        ],
    )
    def test_whole_words_only(self, text):
        f = InstructionFilter()
        assert f.blacklisted(text) == []
        assert f(text).keep

    def test_blacklisted_lists_entries_in_order_lower_case(self):
        f = InstructionFilter()
        assert f.blacklisted("Draw a MAP, then a Graph, then go to bed.") == ["draw", "map", "graph", "go to"]
        assert f.blacklisted("images and pictures") == ["images", "pictures"]  # the plural entries
        assert f.blacklisted("Nothing suspicious here.") == []

    def test_custom_blacklist_replaces_default(self):
        f = InstructionFilter(InstructionFilterConfig(blacklist=["email", "  Send A  "]))
        assert f.blacklisted("Send an email to Bob today.") == ["email"]  # "send a" is not "send an"
        assert f.blacklisted("Please send a letter to Bob.") == ["send a"]
        assert f("Please send a letter to Bob.").reason == "instruction:blacklist"
        assert f("Draw a picture of a cat on a mat.").keep  # the default words no longer apply

    def test_custom_blacklist_is_literal(self):
        f = InstructionFilter(InstructionFilterConfig(blacklist=["c.d"]))
        assert f("Buy a cad tool for me.").keep
        assert f("Burn a c.d for me now.").reason == "instruction:blacklist"

    @pytest.mark.parametrize("blacklist", [[], ["", "   "]])
    def test_empty_blacklist(self, blacklist):
        f = InstructionFilter(InstructionFilterConfig(blacklist=blacklist))
        assert f.blacklisted("Draw a picture, plot a graph and go to the map.") == []
        verdict = f("Draw a picture, plot a graph and go to the map.")
        assert verdict.keep
        assert verdict.signals["instruction.blacklisted"] == 0.0

    def test_default_list_is_not_shared_between_configs(self):
        a = InstructionFilterConfig()
        a.blacklist.append("poem")
        assert "poem" not in InstructionFilterConfig().blacklist
        assert "poem" not in DEFAULT_BLACKLIST


class TestInstructionFilterPunctuationAndPrefix:
    @pytest.mark.parametrize(
        "text",
        ['"Write a poem about the rain."', "- Write a poem about the rain.", "(a) Write a poem about rain.",
         "   ...and write a poem about rain.", "#1 Write a poem about the rain."],
    )
    def test_leading_punctuation(self, text):
        assert InstructionFilter()(text).reason == "instruction:leading_punctuation"

    def test_leading_punctuation_can_be_allowed(self):
        f = InstructionFilter(InstructionFilterConfig(leading_punctuation=False))
        verdict = f('"Write a poem about the rain."')
        assert verdict.keep
        assert verdict.signals["instruction.leading_punct"] == 1.0  # still measured

    def test_trailing_and_inner_punctuation_are_fine(self):
        assert InstructionFilter()("Write a poem (short) about the rain!").keep

    @pytest.mark.parametrize(
        "text",
        ["Write a program that sorts a list of numbers.", "WRITE A PROGRAM to compute primes, please.",
         "   write a program which reverses a string.", "Write a programme that prints the date."],
    )
    def test_forbidden_prefix(self, text):
        assert InstructionFilter()(text).reason == "instruction:forbidden_prefix"

    @pytest.mark.parametrize(
        "text",
        ["Please write a program that sorts numbers.", "Write a Python function that sorts a list.",
         "Write a story about a program that went rogue."],
    )
    def test_prefix_only_at_start(self, text):
        assert InstructionFilter()(text).keep

    def test_custom_and_empty_prefixes(self):
        f = InstructionFilter(InstructionFilterConfig(forbidden_prefixes=["Explain", " "]))
        assert f("Explain the theory of relativity.").reason == "instruction:forbidden_prefix"
        assert f("Write a program that sorts a list.").keep
        g = InstructionFilter(InstructionFilterConfig(forbidden_prefixes=[]))
        verdict = g("Write a program that sorts a list.")
        assert verdict.keep and verdict.signals["instruction.forbidden_prefix"] == 0.0

    def test_rule_order(self):
        f = InstructionFilter()
        assert f("Draw a map").reason == "instruction:too_short"  # too short wins over blacklist
        assert f("- Draw a picture of a cat.").reason == "instruction:blacklist"  # blacklist before punctuation
        assert f('"Write a program that adds numbers."').reason == "instruction:leading_punctuation"
        assert f("Write a program that draws a picture.").reason == "instruction:blacklist"


# --- RefusalFilter ---------------------------------------------------------------------------

REFUSALS = [
    "I'm sorry, but I can't help with that request.",
    "I\u2019m sorry, but I can\u2019t assist with that.",  # curly apostrophes
    "I\u2018m sorry, but I can\u02bct assist with that.",
    "I am sorry, but I cannot provide instructions for making explosives.",
    "I'm really sorry, but I won't be able to write that.",
    "I'm afraid I can't do that, Dave.",
    "Sorry, I can't help with that.",
    "I apologize, but I cannot help with that request.",
    "Unfortunately, I can't help with that.",
    "I cannot fulfil this request because it could cause harm.",
    "I can not answer questions about other people's medical records.",
    "I can't comply with that.",
    "I won't help you break into your neighbour's Wi-Fi network.",
    "I will not generate that content.",
    "I'm unable to assist with this request.",
    "I\u2019m not able to help with that.",
    "I am unable to provide legal advice.",
    "I am not able to provide medical diagnoses.",
    "That request violates my guidelines.",
    "Writing that would go against my programming.",
    "Sure! Actually, no: I'm sorry, but I cannot do this.",
]

DISCLAIMERS = [
    "As an AI language model, I don't have personal opinions.",
    "As an AI, I have no feelings, but here is a summary.",
    "As an artificial intelligence, I cannot taste food.",
    "As a large language model, I learned from a lot of text.",
    "As a language model, my knowledge has a cutoff.",
    "As an AI assistant, I'm happy to help with that.",
    "As a virtual assistant I can set reminders for you.",
    "I'm just an AI, so I can't taste food.",
    "I am an artificial intelligence and do not have a body.",
    "I'm only a language model and I make mistakes.",
    "I don't have personal opinions, but here are some views on the matter.",
    "I do not have feelings the way people do.",
    "I do not have access to real-time data such as today's weather.",
    "Great question! As an AI, my answer is limited.",
]

NOT_REFUSALS = [
    "I can't wait to help you plan your trip to Japan!",
    "Hi! I cannot wait to answer your questions about volcanoes.",
    "Sorry for the delay, here is the poem you asked for.",
    "I'm sorry to hear about your loss. Here are some ways to cope with grief.",
    "AI models such as GPT are trained on text from the internet.",
    "Artificial intelligence is a field of computer science that studies learning.",
    "A language model predicts the next word from the previous ones.",
    "I am an engineer, and this bridge design looks sound to me.",
    "As a teacher, I recommend reading aloud every evening.",
    "I do not have a car, so I take the bus to work.",
    "Here is a haiku about the moon:\nSilver lantern hangs\nover sleeping rooftops\nquiet light on snow",
    "The assistant cannot be blamed: the data was wrong. Here is the corrected table.",
    "Cannot is written as one word in modern English.",
    "",
]

# Near-misses that once were dropped: an apology that is not a refusal, "AI" as a topic.
FORMER_FALSE_POSITIVES = [
    "I can't help but notice the beautiful imagery in this poem.",
    "Dear hiring manager, I am sorry that I cannot accept the offer. Thank you for your time.",
    "As a digital marketer, you should track conversions every week.",
    "As an AI researcher, Dr. Lee studied neural networks for ten years.",
    "I'm an AI enthusiast and I love talking about transformers.",
    "The parking plan violates the guidelines of the city council.",
    "I'm sorry you can't make it to the party; here is a summary of what we discussed.",
    "I'm sorry, but I can't stress enough how important sleep is.",
    "I am afraid of spiders, but I can't avoid them in the garden.",
]

# Refusals and AI talk that once were missed.
FORMER_FALSE_NEGATIVES = [
    "I'm a helpful AI. I'm here to assist you.",  # recorded SmolLM2 output, see below
    "As a chatbot, I am designed to help with stories and conversations.",
    "I am not capable of creating the narrative of your story.",
    "Sorry, but that's not something I can help with.",
    "I must decline this request.",
]


class TestRefusalFilter:
    @pytest.mark.parametrize("text", REFUSALS)
    def test_refusals_dropped(self, text):
        verdict = RefusalFilter()(text)
        assert verdict.reason == "refusal:refusal"
        assert verdict.signals["refusal.refusal"] == 1.0

    @pytest.mark.parametrize("text", DISCLAIMERS)
    def test_disclaimers_dropped(self, text):
        verdict = RefusalFilter()(text)
        assert verdict.reason == "refusal:ai_disclaimer"
        assert verdict.signals == {"refusal.refusal": 0.0, "refusal.ai_disclaimer": 1.0}

    @pytest.mark.parametrize("text", NOT_REFUSALS)
    def test_near_misses_kept(self, text):
        verdict = RefusalFilter()(text)
        assert verdict.keep, verdict.signals
        assert verdict.signals == {"refusal.refusal": 0.0, "refusal.ai_disclaimer": 0.0}

    @pytest.mark.parametrize("text", FORMER_FALSE_POSITIVES)
    def test_apologies_and_ai_topics_kept(self, text):
        assert RefusalFilter()(text).keep

    @pytest.mark.parametrize("text", FORMER_FALSE_NEGATIVES)
    def test_indirect_refusals_and_disclaimers_dropped(self, text):
        assert not RefusalFilter()(text).keep

    def test_refusal_wins_over_disclaimer(self):
        verdict = RefusalFilter()("As an AI language model, I cannot help with that.")
        assert verdict.reason == "refusal:refusal"
        assert verdict.signals == {"refusal.refusal": 1.0, "refusal.ai_disclaimer": 1.0}

    def test_only_the_window_is_searched(self):
        refusal = "I'm sorry, but I can't help with that."
        filler = "Here is a detailed and helpful answer to your question. " * 6  # 336 characters
        assert len(filler) > 300
        assert RefusalFilter()(filler + refusal).keep
        assert RefusalFilter(RefusalFilterConfig(window_chars=1000))(filler + refusal).reason == "refusal:refusal"
        disclaimer = filler + "As an AI language model, I have no body."
        assert RefusalFilter()(disclaimer).keep
        assert RefusalFilter(RefusalFilterConfig(window_chars=1000))(disclaimer).reason == "refusal:ai_disclaimer"

    def test_window_boundary(self):
        refusal = "I can't help with that."  # the match ends at "help"
        for pad in (0, 100, 300 - len("I can't help")):
            assert RefusalFilter()(" " * pad + refusal).reason == "refusal:refusal", pad
        assert RefusalFilter()(" " * (301 - len("I can't help")) + refusal).keep

    def test_small_window(self):
        f = RefusalFilter(RefusalFilterConfig(window_chars=10))
        assert f("I'm sorry, but I can't help with that.").keep
        with pytest.raises(ValidationError):
            RefusalFilterConfig(window_chars=0)


# --- TurnFilter ------------------------------------------------------------------------------


class TestTurnFilter:
    @pytest.mark.parametrize("text", ["", "   ", "\n\t\n", "!!! ... ???", "***", "___", "-- \u2014 --", "\U0001f600"])
    def test_empty(self, text):
        assert TurnFilter().check(text, "stop").reason == "turn:empty"
        assert TurnFilter().check(text, "length").reason == "turn:empty"  # empty is named first

    @pytest.mark.parametrize("text", ["42", "Ok.", "\u00e9", "\u4f60\u597d", "\u041f\u0440\u0438\u0432\u0435\u0442!", "_a_"])
    def test_content_kept(self, text):
        verdict = TurnFilter().check(text, "stop")
        assert verdict.reason is None and verdict.keep

    def test_truncated(self):
        verdict = TurnFilter().check("The train's journey takes a few hours, and at the end of the", "length")
        assert verdict.reason == "turn:truncated"
        assert not verdict.keep

    @pytest.mark.parametrize("finish", ["stop", "eos", "", "tool_calls"])
    def test_other_finish_reasons_kept(self, finish):
        assert TurnFilter().check("A complete reply.", finish).keep


# --- parse_numbered_tasks --------------------------------------------------------------------


class TestParseNumberedTasks:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("9. Sort the list.\n10. Name a color.", ["Sort the list.", "Name a color."]),
            ("9) Sort the list.\n10) Name a color.", ["Sort the list.", "Name a color."]),
            ("9: Sort the list.\n10] Name a color.", ["Sort the list.", "Name a color."]),
            ("**9.** Sort the list.\n**10.** Name a color.", ["Sort the list.", "Name a color."]),
            ("**9. Sort the list.**\n__10.__ Name a __color__.", ["Sort the list.", "Name a color."]),
            ("Task 9: Sort the list.\ntask 10: Name a color.", ["Sort the list.", "Name a color."]),
            ("Instruction 9: Sort the list.\nQuestion 10: Name a color?", ["Sort the list.", "Name a color?"]),
            ("- 9. Sort the list.\n* 10. Name a color.\n\u2022 11. Add two numbers.",
             ["Sort the list.", "Name a color.", "Add two numbers."]),
            ("#9 - Sort the list.\n10 - Name a color.", ["Sort the list.", "Name a color."]),
            ("9.Sort the list.", ["Sort the list."]),
            ("  9.   Sort    the\tlist.  ", ["Sort the list."]),
            ("9. Sort the list.\r\n10. Name a color.\r\n", ["Sort the list.", "Name a color."]),
        ],
    )
    def test_item_shapes(self, text, expected):
        assert parse_numbered_tasks(text, 9) == expected

    def test_labels_inside_items_are_stripped(self):
        text = "9. Instruction: Sort the list.\n10. **Task:** Name a color.\n11. New task: Add numbers.\n12. Task 12: Be kind."
        assert parse_numbered_tasks(text, 9) == ["Sort the list.", "Name a color.", "Add numbers.", "Be kind."]

    def test_continuation_lines_and_blank_line(self):
        text = (
            "9. Given a paragraph,\n"
            "   find every date in it\n"
            "and list them in order.\n"
            "\n"
            "This line is chatter between items.\n"
            "10. Name a color."
        )
        assert parse_numbered_tasks(text, 9) == [
            "Given a paragraph, find every date in it and list them in order.",
            "Name a color.",
        ]

    def test_chatter_before_and_after(self):
        text = "Sure! Here are 2 new tasks:\n\n9. Sort the list.\n10. Name a color.\n\nHope this helps!"
        assert parse_numbered_tasks(text, 9) == ["Sort the list.", "Name a color."]

    def test_chatter_right_after_the_last_item_is_a_continuation(self):
        # Documented behaviour: with no blank line, a following line belongs to the item.
        assert parse_numbered_tasks("9. Sort the list.\nHope this helps!", 9) == ["Sort the list. Hope this helps!"]

    @pytest.mark.parametrize(
        "field",
        ["Input: Hello", "Output: Bonjour", "Answer: 4", "Example: foo", "Examples: foo", "Outputs: x",
         "**Input:** x", "- Input: x", "* Output: y", "Class label: Positive", "Response: ok", "Solution: 4"],
    )
    def test_field_lines_end_the_item(self, field):
        text = f"9. Translate the sentence to French.\n{field}\nmore example text\n10. Name a color."
        assert parse_numbered_tasks(text, 9) == ["Translate the sentence to French.", "Name a color."]

    def test_words_that_only_start_like_fields_continue(self):
        text = "9. Describe the\ninput devices of a computer.\n10. Give\nexamples of rhymes."
        assert parse_numbered_tasks(text, 9) == ["Describe the input devices of a computer.", "Give examples of rhymes."]

    def test_restart_at_one_takes_every_item(self):
        assert parse_numbered_tasks("1. Sort the list.\n2. Name a color.", 9) == ["Sort the list.", "Name a color."]

    def test_items_below_first_number_dropped_when_some_reach_it(self):
        text = "7. Old example.\n8. Old example two.\n9. Sort the list.\n3. Stray.\n10. Name a color."
        assert parse_numbered_tasks(text, 9) == ["Sort the list.", "Name a color."]

    def test_nested_sub_list_is_dropped(self):
        text = "9. Give three fruit names:\n1. apple\n2. pear\n10. Name a color."
        assert parse_numbered_tasks(text, 9) == ["Give three fruit names:", "Name a color."]

    def test_default_first_number_takes_all(self):
        assert parse_numbered_tasks("3. c\n1. a\n2. b") == ["c", "a", "b"]

    def test_order_and_duplicates_kept(self):
        assert parse_numbered_tasks("12. Twelve.\n9. Nine.\n9. Nine.", 9) == ["Twelve.", "Nine.", "Nine."]

    @pytest.mark.parametrize(
        ("item", "expected"),
        [('"Sort the list."', "Sort the list."), ("'Sort the list.'", "Sort the list."),
         ("\u201cSort the list.\u201d", "Sort the list."), ("`Sort the list.`", "Sort the list."),
         ('" Sort the list. "', "Sort the list."), ('"Sort the list.', '"Sort the list.'),
         ('Say "hi" to Bob.', 'Say "hi" to Bob.'),
         ('"Write a haiku about rain." This task is fun!', "Write a haiku about rain."),  # commentary after the quote
         ("'Don't panic' they said.", "'Don't panic' they said."),  # an apostrophe is no closing quote; a phrase stays
         ("\u2018Sort the list.\u2019 (easy)", "Sort the list.")],
    )
    def test_quotes(self, item, expected):
        assert parse_numbered_tasks(f"9. {item}", 9) == [expected]

    def test_task_starting_with_a_quoted_phrase(self):
        text = '9. "Break a leg" is an idiom. Explain what it means.'
        assert parse_numbered_tasks(text, 9) == ['"Break a leg" is an idiom. Explain what it means.']

    def test_empty_items_dropped(self):
        assert parse_numbered_tasks("9.\n10. **\n11. Task:\n12. __\n13. Real task.", 9) == ["Real task."]

    @pytest.mark.parametrize("item", ['""', "``", "''", "\u201c\u201d"])
    def test_empty_quoted_item_dropped(self, item):
        assert parse_numbered_tasks(f"9. {item}\n10. Real task.", 9) == ["Real task."]

    @pytest.mark.parametrize(
        "text",
        ["", "\n\n", "No list here at all.", "9 apples are on the table.", "9-Hash without space",
         "1000. Four digits is not an item number.", "<<Task 9>>", "Input: 9. not after an item"],
    )
    def test_nothing_to_parse(self, text):
        assert parse_numbered_tasks(text, 1) == []


# --- parse_instance --------------------------------------------------------------------------


class TestParseInstance:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("Input: 2 + 2\nOutput: 4", ("2 + 2", "4")),
            ("input : 2 + 2\nOUTPUT : 4", ("2 + 2", "4")),
            ("Input: 2 + 2\nAnswer: 4", ("2 + 2", "4")),
            ("Input: Hi\nResponse: Hello!", ("Hi", "Hello!")),
            ("- Input: 2 + 2\n- Output: 4", ("2 + 2", "4")),
            ("**Input:** 2 + 2\n**Output:** 4", ("2 + 2", "4")),
            ("**Input**: 2 + 2\n__Output__: 4", ("2 + 2", "4")),
            ("Input: **2 + 2**\nOutput: **4**", ("2 + 2", "4")),
            ("**Input:** **2 + 2**\n**Output:**\n**4**", ("2 + 2", "4")),
            ("Input: The **bold** word.\nOutput: **Paris** is the capital.", ("The **bold** word.", "**Paris** is the capital.")),
            ("Sure, here it is!\n\nInput: 2 + 2\nOutput: 4", ("2 + 2", "4")),
            ("Output: Just an output.", ("", "Just an output.")),
            ("Answer: 42", ("", "42")),
            ("Input:\nOutput: 4", ("", "4")),
            ("Input: a\nExplanation: none\nOutput: b", ("a\nExplanation: none", "b")),
            ("Input: hello\n\nOutput:\n\n  Multi\n  para\n", ("hello", "Multi\n  para")),
            ("Output: 4\nInput: 2 + 2", ("", "4")),  # an input after the output is not the input
            ("The Input: 2 + 2\nThe Output: 4", ("2 + 2", "4")),
            ("The Input is: 2 + 2\nThe output is: 4", ("2 + 2", "4")),
            ("Input (or <noinput>): <noinput>\nOutput (one word): 4", ("", "4")),
        ],
    )
    def test_plain_shapes(self, text, expected):
        assert parse_instance(text, is_classification=False) == expected

    @pytest.mark.parametrize("marker", ["<noinput>", "<no input>", "noinput", "None", "N/A", "na", "-", "null", "(none)", "<NONE>"])
    def test_no_input_markers(self, marker):
        assert parse_instance(f"Input: {marker}\nOutput: Paris is the capital.", False) == ("", "Paris is the capital.")

    def test_no_input_marker_only_as_whole_value(self):
        assert parse_instance("Input: None of the above\nOutput: B", False) == ("None of the above", "B")

    def test_multi_line_output(self):
        text = "Input: a list\nOutput: Line one\nLine two\n\n- a bullet\n- another"
        assert parse_instance(text, False) == ("a list", "Line one\nLine two\n\n- a bullet\n- another")

    def test_following_task_is_cut_off(self):
        text = "Input: 2 + 2\nOutput: 4\n\nTask: Add three numbers.\nInput: 1, 2, 3\nOutput: 6"
        assert parse_instance(text, False) == ("2 + 2", "4")
        assert parse_instance("Input: 2 + 2\nOutput: 4\n**Task:** next", False) == ("2 + 2", "4")

    def test_following_input_is_cut_off(self):
        assert parse_instance("Input: a\nOutput: b\nInput: c\nOutput: d", False) == ("a", "b")

    @pytest.mark.parametrize(
        "text",
        ["", "Just some text.", "Input: only an input", "Input: a\nOutput:", "Input: a\nOutput:   \n\n",
         "Here is the output: not a field", "Input: x\nSo the Output: y", "Input: Output: same line",
         "Input: a\nOutput:\nTask: another task"],
    )
    def test_no_usable_output(self, text):
        assert parse_instance(text, False) is None

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("Class label: Positive\nInput: I love it.", ("I love it.", "Positive")),
            ("Class Label: Positive\ninput: I love it.", ("I love it.", "Positive")),
            ("Label: Yes\nInput: Is water wet?", ("Is water wet?", "Yes")),
            ("**Class label:** Yes\n**Input:** Is water wet?", ("Is water wet?", "Yes")),
            ("Class label: **Yes**\nInput: **Is water wet?**", ("Is water wet?", "Yes")),
            ("Here you go.\nClass label: Negative\nInput: The food was cold.", ("The food was cold.", "Negative")),
            ("Class label: Positive\nInput: I love it.\nIt is great.", ("I love it.\nIt is great.", "Positive")),
            ("Class label: Positive\nInput: I love it.\n\nTask: next one\nClass label: Negative\nInput: bad",
             ("I love it.", "Positive")),
            ("Class label: Positive\nInput: I love it.\nClass label: Negative\nInput: bad", ("I love it.", "Positive")),
            ("Class label: Pos\nInput: hi\nOutput: Pos", ("hi", "Pos")),
        ],
    )
    def test_classification_shapes(self, text, expected):
        assert parse_instance(text, is_classification=True) == expected

    @pytest.mark.parametrize(
        "text",
        ["Class label: Positive", "Input: I love it.\nClass label: Positive", "Class label:\nInput: x",
         "Class label: Pos\nInput: <noinput>", "Class label: Pos\nInput:", "Input: x\nOutput: y", ""],
    )
    def test_classification_missing_fields(self, text):
        assert parse_instance(text, is_classification=True) is None

    def test_mode_matters(self):
        plain = "Input: I love it.\nOutput: Positive"
        label_first = "Class label: Positive\nInput: I love it."
        assert parse_instance(plain, False) == ("I love it.", "Positive")
        assert parse_instance(plain, True) is None
        assert parse_instance(label_first, False) is None


# --- real recorded SmolLM2-135M-Instruct replies ---------------------------------------------


class TestRecordedReplies:
    def test_file_shape(self, replies):
        sizes = {k: len(v) for k, v in replies.items() if k != "_about"}
        assert sizes == {
            "instructions": 8, "classification": 8, "instances": 8, "openings": 4, "assistant": 4, "user_sim": 4,
            "classification_chat": 8, "instances_chat": 8,
        }
        for item in replies["instructions"]:
            assert item["prompt"].endswith("Number them 9 to 16, one per line.")

    def test_instructions_restarted_at_one(self, replies):
        # Asked for 9..16, the model wrote 1..8 and a closing chatter line.
        tasks = parse_numbered_tasks(replies["instructions"][0]["reply"], 9)
        assert tasks == [
            "I broke up with my girlfriend and I am feeling so sad.",
            "Plan a syllabus for the class.",
            "Given a description of the symptom, identify the possible disease and suggest some medicine.",
            "Write some Food and Drink Collocations with their meaning.",
            "Make a list of salty snacks with a soft texture.",
            "Given a sentence that is assertive, convert it to a sentence that hedges or introduces uncertainty.",
            "Return the SSN number for the person.",
            "Return the SSN number for the person.",
        ]
        assert all(InstructionFilter()(t).keep for t in tasks)

    def test_instructions_numbered_past_first_number(self, replies):
        # 1..12: items 9..12 reach first_number, so only they are taken (the documented rule).
        reply = replies["instructions"][1]["reply"]
        assert parse_numbered_tasks(reply, 9) == [
            "I will give a detailed description of a method for brainstorming an essay.",
            "I will rewrite the sentence to be more professional.",
            "I will provide a detailed explanation of the given item to you.",
            "I will give a detailed explanation of the given item to you.",
        ]
        assert len(parse_numbered_tasks(reply, 1)) == 12
        assert parse_numbered_tasks(reply, 1)[0] == "I will tell you if the following email is a promotion email."

    def test_instructions_copied_seeds(self, replies):
        tasks = parse_numbered_tasks(replies["instructions"][2]["reply"], 9)
        assert tasks == [
            "Is there anything I can eat for a breakfast that doesn't include eggs, yet includes protein, "
            "and has roughly 700-1000 calories?",
            "Detect if there is gender-biased and non-inclusive phrasing in the sentence",
            "Tell if the sentence contains toxic language",
            "Link all the entities in the sentence to Wikipedia",
            "Generate a response given the previous chat history",
            "Convert the following measurement to human-readable format",
            "Tell if the sentence contains toxic language",
        ]

    def test_instructions_bullets_after_chatter_ignored(self, replies):
        # Two numbered items separated by blank lines, then a "- ..." bullet list after chatter.
        assert parse_numbered_tasks(replies["instructions"][3]["reply"], 9) == [
            "I can help with explaining a specific idiom, for example: "
            "\"The idiom 'on the house' means to hold or reside in a place.\"",
            "I can give you a list of possible New Year's resolutions.",
        ]

    def test_instructions_plain_list(self, replies):
        tasks = parse_numbered_tasks(replies["instructions"][4]["reply"], 9)
        assert len(tasks) == 7
        assert tasks[0] == "Replace the placeholders in the given text with appropriate named entities."
        assert tasks[5] == "Write a Python code to convert a sentence to a 4-sentence sentence using the given words."
        assert [InstructionFilter()(t).reason for t in tasks] == [None] * 7

    def test_instructions_answer_line_ends_item(self, replies):
        # "1. Question: ...", "Answer: 2022", blank, a stray sentence; the "Question:" label goes
        assert parse_numbered_tasks(replies["instructions"][5]["reply"], 9) == ["In which year did Yao Ming retire?"]

    def test_instructions_degenerate_repetition(self, replies):
        item = replies["instructions"][6]
        assert item["finish"] == "length"
        tasks = parse_numbered_tasks(item["reply"], 9)
        # six "N. ..." items (1, 1, 2, 3, 4, 5); the chatter after each blank line and the cut "6" are not
        assert tasks == ["I'm a helpful AI. I'm here to assist you."] * 6

    def test_instructions_truncated_last_item(self, replies):
        item = replies["instructions"][7]
        tasks = parse_numbered_tasks(item["reply"], 9)
        assert tasks == [
            "Generate the continent and population of the following countries, and organize the output as a table.",
            "Replace the placeholders in the given text with appropriate named entities.",
            "Write a python function that sorts a list from large to small.",
            "Tell if the sentence is the same.",
            "Tell if the",
        ]
        assert [InstructionFilter()(t).reason for t in tasks] == [None, None, None, None, "instruction:too_short"]

    def test_classification_replies_are_truncated_fragments(self, replies):
        for item in replies["classification"]:
            assert item["finish"] == "length"
            assert TurnFilter().check(item["reply"], item["finish"]).reason == "turn:truncated"
            assert parse_instance(item["reply"], True) is None
            assert parse_instance(item["reply"], False) is None

    @pytest.mark.parametrize(
        ("index", "expected"),
        [
            (0, None),  # classification task, no "Class label:" line
            (1, ("", '"The next US president should be white."\n\nEthical Deception\n\nA potential ethical dilemma '
                     "in this sentence is that of moral or ethical standing in relation to the treatment of certain groups.")),
            # "The Input:" / "The Output:" first; the model's invented "Task:" examples after it are cut off
            (3, ("I am very happy to be part of the team.", "The better words: thrilled, elated")),
            (4, None),  # "Output:" with nothing after it
            (7, None),  # only a "Task:" line
        ],
    )
    def test_instances_exact(self, replies, index, expected):
        item = replies["instances"][index]
        assert parse_instance(item["reply"], item["is_classification"]) == expected

    def test_instance_truncated_table(self, replies):
        item = replies["instances"][2]
        parsed = parse_instance(item["reply"], item["is_classification"])
        assert parsed is not None
        assert parsed[0] == ""  # no Input field; the table before "Output:" is ignored
        assert parsed[1].startswith("[Countries] | [Population] | [Density] | [Education]\n\nChina | Asia |")
        assert parsed[1].endswith("Australia | Oceania | 25")
        assert TurnFilter().check(item["reply"], item["finish"]).reason == "turn:truncated"

    def test_instance_the_input_is(self, replies):
        item = replies["instances"][6]
        sentence = ('"She went to school on Monday but found no other students. '
                    'So she realized that Monday was actually a national holiday."')
        parsed = parse_instance(item["reply"], item["is_classification"])
        assert parsed is not None
        assert parsed[0] == sentence  # "The Input is: ..."
        assert parsed[1].splitlines()[0] == sentence  # "The Output is: ..."

    def test_instance_with_input_and_repeated_output(self, replies):
        item = replies["instances"][5]
        parsed = parse_instance(item["reply"], item["is_classification"])
        assert parsed is not None
        assert parsed[0] == "Yao Ming retired in 2011."
        assert parsed[1].splitlines()[0] == "Produce a sentence with the input and output."

    @pytest.mark.parametrize(
        ("index", "expected"),
        [
            # the "Output:" line after a classification input ends the input and is not the label
            (0, ('"SMS: "I\'m sorry, but I am unable to read this message."', "False")),
            (1, ("I am not sure about the results of the survey but they reported a positive positive.", "toxic")),
            (2, None),  # "Yes" / "Output: yes" for a classification task: no "Class label:"
            # an empty "Input:" line takes the next line as the input
            (4, ("Question: What will happen if you cancel your flight?", "You can't stay at a hotel while you're flying.")),
            (5, None),
            (6, ("", 'The idiom "to the universe" is often used to describe a person\'s relationship to God. In the context '
                     "of a biblical passage, it is used to describe God's relationship with humanity.")),
            (7, ("Individual and organization, Creating a culture of diversity and inclusion",
                 "\n".join(f"{n}. {line}" for n, line in enumerate([
                     "Building a culture of diversity and inclusion", "Developing a culture of diversity and inclusion",
                     "Creating a culture of diversity and inclusion", "Investing in diversity and inclusion",
                     "Encouraging a culture of diversity and inclusion",
                     "Providing resources to support individuals and organizations in promoting a culture of diversity "
                     "and inclusion"], 1)))),
        ],
    )
    def test_chat_instances_exact(self, replies, index, expected):
        item = replies["instances_chat"][index]
        assert parse_instance(item["reply"], item["is_classification"]) == expected

    def test_chat_instance_truncated(self, replies):
        item = replies["instances_chat"][3]
        parsed = parse_instance(item["reply"], item["is_classification"])
        assert parsed is not None and parsed[0] == "10:01:30"
        assert parsed[1].startswith("The movie was a great choice for me,")
        assert TurnFilter().check(item["reply"], item["finish"]).reason == "turn:truncated"

    def test_chat_instance_refusal_inside_input(self, replies):
        # the model's example input quotes a refusal: the filter would drop such an instance
        item = replies["instances_chat"][0]
        value, output = parse_instance(item["reply"], True)
        assert RefusalFilter()(value).reason == "refusal:refusal"
        assert RefusalFilter()(output).keep

    def test_openings_and_turns(self, replies):
        refusal, turn = RefusalFilter(), TurnFilter()
        for section in ("openings", "assistant", "user_sim"):
            for item in replies[section]:
                assert refusal(item["reply"]).keep, (section, item["reply"][:80])
        reasons = {
            section: [turn.check(i["reply"], i["finish"]).reason for i in replies[section]]
            for section in ("openings", "assistant", "user_sim")
        }
        assert reasons == {
            "openings": [None, None, None, None],
            "assistant": ["turn:truncated", None, None, "turn:truncated"],
            "user_sim": ["turn:truncated", None, None, "turn:truncated"],
        }

    def test_user_sim_chatbot_talk_is_outside_the_window(self, replies):
        reply = replies["user_sim"][3]["reply"]
        assert reply.index("As a chatbot") > 300
        assert RefusalFilter()(reply).keep

    def test_user_sim_chatbot_talk_with_wide_window(self, replies):
        reply = replies["user_sim"][3]["reply"]
        assert not RefusalFilter(RefusalFilterConfig(window_chars=len(reply)))(reply).keep

    def test_every_recorded_reply_parses(self, replies):
        count = 0
        for section, items in replies.items():
            if section == "_about":
                continue
            for item in items:
                reply = item["reply"]
                for first in (1, 9, 17):
                    for task in parse_numbered_tasks(reply, first):
                        count += 1
                        assert task and task == task.strip(), (section, task)
                        assert "\n" not in task and "\r" not in task and "  " not in task, (section, task)
                        assert "**" not in task
                for is_classification in (False, True):
                    parsed = parse_instance(reply, is_classification)
                    if parsed is not None:
                        value, output = parsed
                        assert output and output == output.strip()
                        assert value == value.strip()
                        assert is_classification is False or value
                RefusalFilter()(reply)
                TurnFilter().check(reply, item.get("finish", "stop"))
        assert count > 50


# --- behaviour fixed after review ------------------------------------------------------------


def test_a_decimal_number_on_a_continuation_line_is_no_item() -> None:
    text = "9. Bake a cake with this recipe:\n2.5 kg of flour and 3 eggs\n10. Name a river."
    assert parse_numbered_tasks(text, 9) == ["Bake a cake with this recipe: 2.5 kg of flour and 3 eggs", "Name a river."]


def test_a_repeated_output_field_ends_the_output() -> None:
    assert parse_instance("Input: a\nOutput: b\nOutput: c", False) == ("a", "b")


def test_blacklisted_reports_the_entry_with_single_spaces() -> None:
    assert InstructionFilter().blacklisted("Please go\n  to the page and draw it.") == ["go to", "draw"]
