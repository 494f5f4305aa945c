" Syntax of imgscript build scripts: Rhai, plus the builder functions,
" image methods and option keys of `imgscript api --json`. A test checks
" that every name the API describes is listed here.
if exists('b:current_syntax')
  finish
endif

syntax keyword imgscriptKeyword let const fn import as export if else switch
syntax keyword imgscriptKeyword for in while loop do until return throw try catch
syntax keyword imgscriptKeyword break continue private global
syntax keyword imgscriptBoolean true false

" Builders only where they are called, so that a variable named `user` or
" an option key named `secret` keeps its own colour.
syntax match imgscriptConstructor /\<\(debian_slim\|micromamba\|from_registry\|from_aws_ecr\|from_dockerfile\|from_id\|secret\|secret_from_dotenv\|secret_from_env\|secret_from_map\)\>\ze\s*(/

syntax match imgscriptMethod /\.\s*\zs\<\(apt_install\|pip_install\|uv_pip_install\|pip_install_from_requirements\|pip_install_from_pyproject\|poetry_install_from_file\|uv_sync\|micromamba_install\|run_function\|run_commands\|dockerfile_commands\|env\|workdir\|user\|entrypoint\|cmd\|shell\|add_local_file\|add_local_dir\|add_local_python_source\|copy_from\|tag\)\>\ze\s*(/

" Option keys, where a map key is followed by a colon.
syntax match imgscriptOption /\<\(add_python\|args\|build_args\|channels\|context_dir\|copy\|extra_index_url\|extra_options\|extras\|find_links\|force_build\|frozen\|gpu\|groups\|ignore\|ignore_lockfile\|index_url\|install_recommends\|kwargs\|lockfile\|only\|optional_dependencies\|poetry_version\|pre\|secret\|secrets\|spec_file\|timeout\|uv_project_dir\|with\|with_\|without\)\>\ze\s*:/

syntax match imgscriptNumber /\<\d[0-9_]*\(\.\d[0-9_]*\)\=\>/
syntax region imgscriptString start=/"/ skip=/\\./ end=/"/ contains=imgscriptEscape
syntax region imgscriptString start=/`/ skip=/\\./ end=/`/ contains=imgscriptEscape,imgscriptInterpolation
syntax region imgscriptInterpolation matchgroup=imgscriptDelimiter start=/\${/ end=/}/ contained contains=TOP
syntax match imgscriptEscape /\\./ contained
syntax match imgscriptChar /'\\\=.'/
syntax match imgscriptModulePath /\<\h\w*\ze::/
syntax keyword imgscriptTodo TODO FIXME NOTE contained
syntax match imgscriptComment "//.*$" contains=imgscriptTodo
syntax region imgscriptComment start="/\*" end="\*/" contains=imgscriptTodo

highlight default link imgscriptKeyword Keyword
highlight default link imgscriptBoolean Boolean
highlight default link imgscriptConstructor Function
highlight default link imgscriptMethod Function
highlight default link imgscriptOption Identifier
highlight default link imgscriptNumber Number
highlight default link imgscriptString String
highlight default link imgscriptChar Character
highlight default link imgscriptEscape SpecialChar
highlight default link imgscriptDelimiter Delimiter
highlight default link imgscriptModulePath Include
highlight default link imgscriptTodo Todo
highlight default link imgscriptComment Comment

let b:current_syntax = 'imgscript'
