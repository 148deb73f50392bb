import Testing
@testable import PeerhostCore

/// Table headers that toml++ (inside TOMLKit) would abort on are refused as syntax errors with
/// their line; everything valid still parses.
@Suite struct TOMLHeaderCheckTests {
    @Test(arguments: [
        ("[#", 1), ("[ #", 1), ("[[=", 1), ("[.", 1), ("[", 1), ("a = 1\n\n[!x]", 3), ("[a]\nb = 2\n[,", 3),
    ])
    func aHeaderThatCannotStartWithAKeyIsASyntaxError(text: String, line: Int) {
        do {
            _ = try TOMLSource(text: text, displayName: "m.toml")
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.line == line, "\(error)")
            #expect(error.description.contains("m.toml"), "\(error)")
            #expect(error.description.contains("table header must start with a key"), "\(error)")
        }
    }

    @Test func validDocumentsWithBracketsInsideValuesStillParse() throws {
        let text = """
        # [# a comment is not a header]
        title = "[# in a string"
        multi = \"\"\"
        [# inside a multi-line string
        \"\"\"
        raw = '''
        [= also inside'''
        nested = [
          [1, 2],
          [ # a comment after a nested array's bracket
            3 ],
        ]
        inline = { a = [1], b = "]" }

        ["quoted # key"]
        x = 1

        [[ list ]]
        y = 2
        """
        let source = try TOMLSource(text: text, displayName: "ok.toml")
        #expect(source.root["title"] != nil)
        #expect(source.root["quoted # key"] != nil)
        #expect(source.root["list"] != nil)
    }
}
