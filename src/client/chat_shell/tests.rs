use super::*;

#[test]
fn lines_are_understood() {
    assert_eq!(parse_input("/add bob"), Ok(Input::Add("bob".into())));
    assert_eq!(parse_input("/block bob"), Ok(Input::Block("bob".into())));
    assert_eq!(
        parse_input("/unblock bob"),
        Ok(Input::Unblock("bob".into()))
    );
    assert_eq!(
        parse_input("/msg bob hello there "),
        Ok(Input::Msg("bob".into(), "hello there".into()))
    );
    assert_eq!(parse_input("hi all"), Ok(Input::Say("hi all".into())));
    assert_eq!(
        parse_input("/history bob 5"),
        Ok(Input::History(Some("bob".into()), 5))
    );
    assert_eq!(parse_input("/history"), Ok(Input::History(None, 20)));
    assert_eq!(parse_input("/color none"), Ok(Input::Color(None)));
    assert_eq!(parse_input("/color"), Ok(Input::ShowColor));
    assert_eq!(parse_input("/me waves"), Ok(Input::Say("/me waves".into())));
    assert!(parse_input("/me").is_err());
    assert_eq!(parse_input("one\ntwo"), Ok(Input::Say("one\ntwo".into())));
    assert_eq!(parse_input("  "), Ok(Input::Nothing));
    assert!(parse_input("/msg bob").is_err());
    assert!(parse_input("/add").is_err());
    assert!(parse_input("/frobnicate").unwrap_err().contains("/help"));
}

#[test]
fn a_block_of_lines_is_one_message_and_pasted_commands_run_each() {
    assert_eq!(pieces("hello\nworld"), ["hello\nworld"]);
    assert_eq!(pieces("/msg bob a\nb"), ["/msg bob a\nb"]);
    assert_eq!(pieces("/me waves\nand smiles"), ["/me waves\nand smiles"]);
    assert_eq!(pieces("/add bob\n/add carol"), ["/add bob", "/add carol"]);
}

#[test]
fn tab_completes_commands_friends_and_colours() {
    let shared = Arc::new(EditorState::default());
    *shared.friends.lock().unwrap() = vec!["alice".into(), "albert".into(), "bob".into()];
    let helper = ChatHelper { shared };
    let history = rustyline::history::DefaultHistory::new();
    let ctx = Context::new(&history);
    let complete = |line: &str| {
        let (start, pairs) = helper.complete(line, line.len(), &ctx).unwrap();
        let words: Vec<String> = pairs.into_iter().map(|p| p.replacement).collect();
        (start, words)
    };
    assert_eq!(complete("/fr"), (0, vec!["/friends ".to_owned()]));
    assert_eq!(
        complete("/msg al"),
        (5, vec!["alice ".to_owned(), "albert ".to_owned()])
    );
    assert_eq!(
        complete("/color bright-c"),
        (7, vec!["bright-cyan ".to_owned()])
    );
    // The text of a message is not completed.
    assert_eq!(complete("/msg bob al").1, Vec::<String>::new());
    assert_eq!(complete("hello al").1, Vec::<String>::new());
}

/// Issue 27.12: friend names from the server reached the terminal raw in the Tab list
/// (an OSC title sequence got through). Only real user names are offered.
#[test]
fn tab_never_offers_a_hostile_name_from_the_server() {
    let shared = Arc::new(EditorState::default());
    *shared.friends.lock().unwrap() = vec![
        "al\u{1b}]0;owned\u{7}".into(),
        "al\u{202e}ecila".into(),
        "alice".into(),
    ];
    let helper = ChatHelper { shared };
    let history = rustyline::history::DefaultHistory::new();
    let ctx = Context::new(&history);
    let (_, pairs) = helper.complete("/msg al", 7, &ctx).unwrap();
    let shown: Vec<(String, String)> = pairs
        .into_iter()
        .map(|p| (p.display, p.replacement))
        .collect();
    assert_eq!(shown, [("alice".to_owned(), "alice ".to_owned())]);
}
