" imgscript build scripts: *.img files that hold Rhai source.
autocmd BufRead,BufNewFile *.img setfiletype imgscript
